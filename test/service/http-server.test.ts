/**
 * The service HTTP server (service/http-server.ts) with the compute
 * service's routes (agent/http-routes.ts) on a fake source, on 127.0.0.1
 * with a port of its own: every route, the schemas' refusals, the one JSON
 * error shape everywhere (unknown routes, wrong methods, Node's own parser
 * errors), no stack or raw input in answers, listen failures, and routes
 * added as encapsulated plugins. The token check has its own file
 * (http-auth.test.ts); here every request carries the token.
 */
import net from 'node:net';
import type { FastifyPluginAsync } from 'fastify';
import { describe, expect, it } from 'vitest';
import { CONSOLE_LINES } from '../../agent/http-routes.js';
import { NovaletError } from '../../config/novalet-error.js';
import { startHttpServer } from '../../service/http-server.js';
import { capturedLogger } from '../support/captured-logger.js';
import { AUTH, expectError, fakeSource, OTHER, raw, startServer, TOKEN, UUID, view, withToken } from '../support/http-server-client.js';

describe('the HTTP server: routes', () => {
  it('GET /healthz is 200 {"status":"ok","reasons":[]} when healthy', async () => {
    const { base } = await startServer();
    const response = await fetch(`${base}/healthz`);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ status: 'ok', reasons: [] });
  });

  it('GET /healthz is 200 when degraded, 503 when unavailable, with the reasons', async () => {
    const degraded = { status: 'degraded' as const, reasons: ["instances_path '/var/lib/novalet/instances' is full"] };
    const unavailable = { status: 'unavailable' as const, reasons: ['not consuming compute.host-a: the broker at 127.0.0.1:5672 is unreachable'] };
    let state: typeof degraded | typeof unavailable = degraded;
    const { base } = await startServer(fakeSource(), { health: async () => state });
    let response = await fetch(`${base}/healthz`);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual(degraded);
    state = unavailable;
    response = await fetch(`${base}/healthz`);
    expect(response.status).toBe(503);
    expect(await response.json()).toEqual(unavailable);
  });

  it('GET /healthz is 503 when the health check itself throws, without its words', async () => {
    const { base, logs } = await startServer(fakeSource(), {
      health: async () => {
        throw new Error('secret detail of a bug');
      },
    });
    const response = await fetch(`${base}/healthz`);
    expect(response.status).toBe(503);
    const text = await response.text();
    expect(JSON.parse(text)).toMatchObject({ status: 'unavailable', reasons: [expect.stringContaining('health check itself failed')] });
    expect(text).not.toContain('secret detail');
    expect(JSON.stringify(logs())).toContain('secret detail');
  });

  it("GET /metrics is the service's text as Prometheus text format 0.0.4", async () => {
    const { base } = await startServer();
    const response = await fetch(`${base}/metrics`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
    expect(await response.text()).toContain('novalet_builds_total 3\n');
  });

  it("GET /v1/host is the source's object as JSON", async () => {
    const { base } = await startServer();
    const response = await fetch(`${base}/v1/host`, AUTH);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^application\/json/);
    expect(response.headers.get('cache-control')).toBe('no-store');
    expect(await response.json()).toEqual({ verdict: { usable: false, reasons: ['KVM_DEVICE_MISSING'] }, virt_type: 'qemu' });
  });

  it('GET /v1/instances lists the instances', async () => {
    const { base } = await startServer();
    const response = await fetch(`${base}/v1/instances`, AUTH);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ instances: [view(UUID, 'web-1')] });
  });

  it('GET /v1/instances/{uuid} is the instance, asked by its UUID in lower case', async () => {
    const source = fakeSource();
    const { base } = await startServer(source);
    const response = await fetch(`${base}/v1/instances/${UUID.toUpperCase()}`, AUTH);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual(view(UUID, 'web-1'));
    expect(source.calls).toEqual([`instance ${UUID}`]);
  });

  it('GET /v1/instances/{uuid} of an unknown UUID is 404 INSTANCE_NOT_FOUND', async () => {
    const { base } = await startServer();
    const response = await fetch(`${base}/v1/instances/${OTHER}`, AUTH);
    expect(response.status).toBe(404);
    const error = expectError(response.status, response.headers.get('content-type'), await response.text(), 'INSTANCE_NOT_FOUND');
    expect(error.message).toContain(OTHER);
  });

  it('GET /v1/instances/{uuid}/console is text/plain, 100 lines unless lines= says otherwise', async () => {
    const source = fakeSource();
    const { base } = await startServer(source);
    const response = await fetch(`${base}/v1/instances/${UUID}/console`, AUTH);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('text/plain; charset=utf-8');
    expect(response.headers.get('x-content-type-options')).toBe('nosniff');
    expect(await response.text()).toBe('[    0.000000] Linux version 6.1\nlogin:\n');
    for (const lines of [1, 25, 10000]) expect((await fetch(`${base}/v1/instances/${UUID}/console?lines=${lines}`, AUTH)).status).toBe(200);
    expect(source.calls).toEqual([`console ${UUID} ${CONSOLE_LINES.default}`, `console ${UUID} 1`, `console ${UUID} 25`, `console ${UUID} 10000`]);
  });

  it('GET /v1/instances/{uuid}/console of an unknown UUID is 404 INSTANCE_NOT_FOUND', async () => {
    const { base } = await startServer();
    const response = await fetch(`${base}/v1/instances/${OTHER}/console?lines=5`, AUTH);
    expect(response.status).toBe(404);
    expectError(response.status, response.headers.get('content-type'), await response.text(), 'INSTANCE_NOT_FOUND');
  });

  it('HEAD answers as GET does, without a body', async () => {
    const { base } = await startServer();
    const response = await fetch(`${base}/v1/instances`, { method: 'HEAD', ...AUTH });
    expect(response.status).toBe(200);
    expect(await response.text()).toBe('');
  });
});

describe('the HTTP server: requests it refuses', () => {
  it('refuses a path parameter that is not a UUID with 400, and never asks the source', async () => {
    const source = fakeSource();
    const { server, base } = await startServer(source);
    for (const path of ['/v1/instances/not-a-uuid', '/v1/instances/..%2Fetc', `/v1/instances/urn:uuid:${UUID}`, `/v1/instances/${UUID}x/console`, `/v1/instances/%00/console`]) {
      const response = await fetch(`${base}${path}`, AUTH);
      expect(response.status, path).toBe(400);
      const error = expectError(response.status, response.headers.get('content-type'), await response.text(), 'BAD_REQUEST');
      expect(error.message).toContain('must be a UUID');
    }
    // As written on the wire (fetch would resolve the ..): no route has that shape.
    const dotted = await raw(server.address.port, '/v1/instances/../etc', { headers: withToken() });
    expect(dotted.status).toBe(404);
    expectError(dotted.status, dotted.headers['content-type'], dotted.body, 'NOT_FOUND');
    expect(source.calls).toEqual([]);
  });

  it('refuses lines= that is not an integer from 1 to 10000 with 400', async () => {
    const source = fakeSource();
    const { base } = await startServer(source);
    for (const lines of ['abc', '0', '-1', '1.5', '999999', '10001', '', '5&lines=6']) {
      const response = await fetch(`${base}/v1/instances/${UUID}/console?lines=${lines}`, AUTH);
      expect(response.status, lines).toBe(400);
      const error = expectError(response.status, response.headers.get('content-type'), await response.text(), 'BAD_REQUEST');
      expect(error.message).toBe('The query parameter lines must be an integer from 1 to 10000 (default 100).');
    }
    expect(source.calls).toEqual([]);
  });

  it('refuses a query parameter the route does not take, naming it escaped', async () => {
    const { base } = await startServer();
    const console = await fetch(`${base}/v1/instances/${UUID}/console?lines=5&follow=1`, AUTH);
    expect(console.status).toBe(400);
    expect(expectError(console.status, console.headers.get('content-type'), await console.text(), 'BAD_REQUEST').message).toContain("'follow'");
    const host = await fetch(`${base}/v1/host?x=%0Ay`, AUTH);
    expect(host.status).toBe(400);
    expect(expectError(host.status, host.headers.get('content-type'), await host.text(), 'BAD_REQUEST').message).toContain("'x'");
    const health = await fetch(`${base}/healthz?verbose=1`);
    expect(health.status).toBe(400);
  });

  it('answers an unknown route 404 in the error shape, listing the routes and showing a short escaped excerpt of the path', async () => {
    const { base } = await startServer();
    const response = await fetch(`${base}/v2/nothing`, AUTH);
    expect(response.status).toBe(404);
    const error = expectError(response.status, response.headers.get('content-type'), await response.text(), 'NOT_FOUND');
    expect(error.message).toContain("'/v2/nothing'");
    expect(error.message).toContain('GET /healthz, /metrics, /v1/host, /v1/instances, /v1/instances/{uuid}, /v1/instances/{uuid}/console');
    const long = await fetch(`${base}/${'a'.repeat(1500)}`, AUTH);
    expect(long.status).toBe(404);
    const longError = expectError(long.status, long.headers.get('content-type'), await long.text(), 'NOT_FOUND');
    expect(longError.message).toContain(`'/${'a'.repeat(79)}'…`);
  });

  it('answers another method on a route 405 with Allow: GET, HEAD, before reading any body', async () => {
    const { server, base } = await startServer();
    for (const method of ['POST', 'PUT', 'DELETE', 'PATCH']) {
      const response = await fetch(`${base}/v1/instances/${UUID}`, { method, body: JSON.stringify({ state: 'deleted' }), headers: { 'content-type': 'application/json', ...withToken() } });
      expect(response.status, method).toBe(405);
      expect(response.headers.get('allow')).toBe('GET, HEAD');
      expectError(response.status, response.headers.get('content-type'), await response.text(), 'METHOD_NOT_ALLOWED');
    }
    // A body larger than the server's bodyLimit changes nothing: the method is refused first.
    const big = await fetch(`${base}/healthz`, { method: 'POST', body: 'x'.repeat(100_000) });
    expect(big.status).toBe(405);
    expectError(big.status, big.headers.get('content-type'), await big.text(), 'METHOD_NOT_ALLOWED');
    // A method no route has at all is an unknown route.
    const other = await raw(server.address.port, '/v1/host', { method: 'PROPFIND', headers: withToken() });
    expect(other.status).toBe(404);
    expectError(other.status, other.headers['content-type'], other.body, 'NOT_FOUND');
  });

  it('refuses a GET with a body', async () => {
    const { server } = await startServer();
    const answer = await raw(server.address.port, '/v1/host', { headers: { 'content-type': 'application/json', 'content-length': '2', ...withToken() }, body: '{}' });
    expect(answer.status).toBe(400);
    expect(expectError(answer.status, answer.headers['content-type'], answer.body, 'BAD_REQUEST').message).toBe('A GET request takes no body.');
  });

  it("answers a long URL 414 and a huge one 431 (Node's parser), both in the error shape", async () => {
    const { base } = await startServer();
    const long = await fetch(`${base}/v1/instances?${'q'.repeat(4000)}`, AUTH);
    expect(long.status).toBe(414);
    expectError(long.status, long.headers.get('content-type'), await long.text(), 'URI_TOO_LONG');
    const huge = await fetch(`${base}/v1/instances/${'x'.repeat(20_000)}`, AUTH);
    expect(huge.status).toBe(431);
    const error = expectError(huge.status, huge.headers.get('content-type'), await huge.text(), 'HEADERS_TOO_LARGE');
    expect(error.message).not.toContain('xxxx');
  });

  it('answers a path that is not valid percent-encoding 400 without echoing it, and a too long segment 400', async () => {
    const { base } = await startServer();
    const response = await fetch(`${base}/v1/instances/%E0%A4%A`, AUTH);
    expect(response.status).toBe(400);
    const text = await response.text();
    expectError(response.status, response.headers.get('content-type'), text, 'BAD_REQUEST');
    expect(text).not.toContain('%E0');
    const segment = await fetch(`${base}/v1/instances/${'a'.repeat(150)}`, AUTH);
    expect(segment.status).toBe(400);
    expect(expectError(segment.status, segment.headers.get('content-type'), await segment.text(), 'BAD_REQUEST').message).toContain('longer than any');
  });

  it("answers a failing source 500 INTERNAL, with neither the error's words nor its stack; the log has them", async () => {
    const source = fakeSource();
    source.instances = async () => {
      throw new Error('store exploded at /var/lib/novalet/instances/secret.json');
    };
    const { base, logs } = await startServer(source, {
      metrics: async () => {
        throw new TypeError('cannot read properties of undefined');
      },
    });
    for (const [path, init] of [['/v1/instances', AUTH], ['/metrics', {}]] as const) {
      const response = await fetch(`${base}${path}`, init);
      expect(response.status, path).toBe(500);
      const text = await response.text();
      expect(JSON.parse(text)).toEqual({ code: 'INTERNAL', message: "The request failed inside novalet; the service's log has the details." });
      expect(text).not.toMatch(/exploded|undefined|http-|\.ts/);
    }
    const failures = logs().filter((line) => line.level === 50);
    expect(failures).toHaveLength(2);
    expect(JSON.stringify(failures[0])).toContain('store exploded');
  });

  it('answers a source that does not answer in time 503 TIMEOUT', async () => {
    const source = fakeSource();
    source.instances = () => new Promise(() => undefined);
    const { base } = await startServer(source, { handlerTimeoutMs: 200 });
    const response = await fetch(`${base}/v1/instances`, AUTH);
    expect(response.status).toBe(503);
    expectError(response.status, response.headers.get('content-type'), await response.text(), 'TIMEOUT');
  });
});

describe('the HTTP server: routes as plugins', () => {
  it("keeps a plugin's hooks to its own routes, and finds every plugin's routes for 404 and 405", async () => {
    const seen: string[] = [];
    const reads: FastifyPluginAsync = async (app) => {
      app.addHook('onRequest', async (request) => {
        seen.push(request.url);
      });
      app.get('/v1/things', async () => ({ things: [] }));
    };
    const writes: FastifyPluginAsync = async (app) => {
      app.post('/v1/orders', { schema: { body: { type: 'object', properties: { n: { type: 'integer' } }, required: ['n'], additionalProperties: false } } }, async (request) => ({ took: (request.body as { n: number }).n }));
    };
    const { base } = await startServer(fakeSource(), { routes: [reads, writes] });
    expect((await fetch(`${base}/v1/things`, AUTH)).status).toBe(200);
    const posted = await fetch(`${base}/v1/orders`, { method: 'POST', body: JSON.stringify({ n: 2 }), headers: { 'content-type': 'application/json', ...withToken() } });
    expect(await posted.json()).toEqual({ took: 2 });
    // The first plugin's hook saw its own route only.
    expect(seen).toEqual(['/v1/things']);
    const wrong = await fetch(`${base}/v1/orders`, AUTH);
    expect(wrong.status).toBe(405);
    expect(wrong.headers.get('allow')).toBe('POST');
    const refused = await fetch(`${base}/v1/orders`, { method: 'POST', body: JSON.stringify({ n: 'two' }), headers: { 'content-type': 'application/json', ...withToken() } });
    expect(refused.status).toBe(400);
    expectError(refused.status, refused.headers.get('content-type'), await refused.text(), 'BAD_REQUEST');
    const missing = await fetch(`${base}/v1/none`, AUTH);
    expect(expectError(missing.status, missing.headers.get('content-type'), await missing.text(), 'NOT_FOUND').message).toContain('GET /healthz, /metrics, /v1/things; POST /v1/orders');
  });
});

describe('the HTTP server: its server', () => {
  it('logs each request as a JSON line with the route, not the raw URL', async () => {
    const { base, logs } = await startServer();
    await fetch(`${base}/v1/instances/${UUID}?token=hunter2`, AUTH);
    const requests = logs().filter((line) => line.msg === 'HTTP API request');
    expect(requests).toEqual([expect.objectContaining({ method: 'GET', route: '/v1/instances/:uuid', status: 400 })]);
    expect(JSON.stringify(logs())).not.toContain('hunter2');
    expect(JSON.stringify(logs())).not.toContain(TOKEN);
  });

  it('answers a client that does not finish its request in time 408, in the error shape, and closes the connection', async () => {
    const { server } = await startServer(fakeSource(), { requestTimeoutMs: 500 });
    const socket = net.connect(server.address.port, '127.0.0.1');
    let answer = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => (answer += chunk));
    const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
    // The request line and one header, then nothing: the headers never end.
    socket.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n');
    const began = Date.now();
    await closed;
    expect(Date.now() - began).toBeLessThan(5000);
    const [head, body] = answer.split('\r\n\r\n');
    expect(head).toMatch(/^HTTP\/1\.1 408 /);
    expectError(408, /content-type: ([^\r]+)/i.exec(head!)?.[1], body!, 'REQUEST_TIMEOUT');
  });

  it('reports the port it took when asked for port 0', async () => {
    const { server } = await startServer();
    expect(server.address.host).toBe('127.0.0.1');
    expect(server.address.port).toBeGreaterThan(0);
  });

  it('close() ends open connections too: a request under way does not hold it', async () => {
    const source = fakeSource();
    let asked!: () => void;
    const wasAsked = new Promise<void>((resolve) => (asked = resolve));
    source.host = () => {
      asked();
      return new Promise(() => undefined);
    };
    const { server, base } = await startServer(source, { handlerTimeoutMs: 60_000 });
    const pending = fetch(`${base}/v1/host`, AUTH).then(
      () => 'answered',
      () => 'connection closed',
    );
    await wasAsked;
    const began = Date.now();
    await server.close();
    expect(Date.now() - began).toBeLessThan(2000);
    expect(await pending).toBe('connection closed');
    await expect(fetch(`${base}/healthz`)).rejects.toThrow();
  });

  const options = (port: number, listen = '127.0.0.1') => ({
    listen,
    port,
    auth: { mode: 'token' as const, token: TOKEN },
    log: capturedLogger().log,
    health: async () => ({ status: 'ok' as const, reasons: [] }),
    metrics: async () => '',
  });

  it('a port in use is API_LISTEN_FAILED naming [api] port and the remedy', async () => {
    const holder = net.createServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    const port = (holder.address() as net.AddressInfo).port;
    try {
      const error = await startHttpServer(options(port), []).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(NovaletError);
      expect((error as NovaletError).code).toBe('API_LISTEN_FAILED');
      expect((error as NovaletError).message).toContain(`'127.0.0.1' port ${port} ([api] listen, [api] port)`);
      expect((error as NovaletError).message).toContain('another process holds that port');
      expect((error as NovaletError).remedy).toContain(`ss -ltnp 'sport = :${port}'`);
    } finally {
      await new Promise((resolve) => holder.close(resolve));
    }
  });

  it('an address not of this host, or a port out of range, is API_LISTEN_FAILED', async () => {
    // 192.0.2.1 is TEST-NET-1 (RFC 5737): never an address of this host.
    const notHere = await startHttpServer(options(0, '192.0.2.1'), []).catch((e: unknown) => e);
    expect(notHere).toMatchObject({ code: 'API_LISTEN_FAILED' });
    expect((notHere as NovaletError).message).toContain('not an address of this host');
    expect((notHere as NovaletError).remedy).toContain('[api] listen');
    for (const port of [-1, 65536, 1.5]) {
      const bad = await startHttpServer(options(port), []).catch((e: unknown) => e);
      expect(bad, String(port)).toMatchObject({ code: 'API_LISTEN_FAILED' });
      expect((bad as NovaletError).message).toContain('[api] port');
    }
  });
});
