/**
 * The compute service's HTTP API (agent/http-api.ts) on a fake source, on
 * 127.0.0.1 with a port of its own: every route, the schemas' refusals,
 * the one JSON error shape everywhere (unknown routes, wrong methods, Node's
 * own parser errors), no stack or raw input in answers, listen failures.
 */
import http from 'node:http';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { CONSOLE_LINES, startHttpApi, type ApiSource, type HttpApi, type InstanceView } from '../../agent/http-api.js';
import { NovaletError } from '../../config/novalet-error.js';
import { capturedLogger } from '../support/captured-logger.js';

const UUID = '123e4567-e89b-12d3-a456-426614174000';
const OTHER = '9b2f4c1e-0d3a-4e5f-8a7b-6c5d4e3f2a1b';

const view = (uuid: string, name: string): InstanceView => ({
  uuid,
  name,
  state: 'active',
  task: null,
  host: 'host-a',
  virt_type: 'qemu',
  virt_type_reason: 'KVM is not usable here: /dev/kvm is missing; instances run under TCG.',
  fault: null,
  created_at: '2025-01-01T00:00:00.000Z',
  updated_at: '2025-01-01T00:00:01.000Z',
  flavor: { vcpus: 1, memory_mb: 256, root_gb: 1, name: 'm1.tiny' },
});

/** A plain-object source; each test changes what it needs. Calls are recorded. */
function fakeSource(): ApiSource & { calls: string[] } {
  const calls: string[] = [];
  const instances = new Map([[UUID, view(UUID, 'web-1')]]);
  return {
    calls,
    health: async () => ({ ok: true, reason: null }),
    host: async () => ({ verdict: { usable: false, reasons: ['KVM_DEVICE_MISSING'] }, virt_type: 'qemu' }),
    instances: async () => [...instances.values()],
    instance: async (uuid) => {
      calls.push(`instance ${uuid}`);
      return instances.get(uuid) ?? null;
    },
    console: async (uuid, lines) => {
      calls.push(`console ${uuid} ${lines}`);
      return instances.has(uuid) ? ['[    0.000000] Linux version 6.1', 'login:'] : null;
    },
    metrics: () => '# HELP novalet_builds_total Builds.\n# TYPE novalet_builds_total counter\nnovalet_builds_total 3\n',
  };
}

const started: HttpApi[] = [];
afterEach(async () => {
  await Promise.all(started.splice(0).map((api) => api.close()));
});

async function start(source: ApiSource = fakeSource(), extra: { handlerTimeoutMs?: number; requestTimeoutMs?: number } = {}) {
  const logger = capturedLogger();
  const api = await startHttpApi(source, { listen: '127.0.0.1', port: 0, ...extra }, logger.log);
  started.push(api);
  const base = `http://127.0.0.1:${api.address.port}`;
  return { api, base, logs: () => logger.lines };
}

interface RawAnswer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/**
 * A request as written, for what fetch will not send: a path with `..`
 * (fetch resolves it), a GET with a body, a method fetch refuses.
 */
function raw(port: number, path: string, options: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const request = http.request({ host: '127.0.0.1', port, path, method: options.method ?? 'GET', headers: options.headers, agent: false }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
      response.on('end', () => resolve({ status: response.statusCode!, headers: response.headers, body }));
    });
    request.on('error', reject);
    if (options.body !== undefined) request.write(options.body);
    request.end();
  });
}

/** The error shape: JSON with exactly code and message, a sentence with no stack in it. */
function expectError(status: number, contentType: string | null | undefined, body: string, code: string): { code: string; message: string } {
  expect(contentType).toMatch(/^application\/json/);
  const parsed = JSON.parse(body) as { code: string; message: string };
  expect(Object.keys(parsed).sort()).toEqual(['code', 'message']);
  expect(parsed.code).toBe(code);
  expect(parsed.message.length).toBeGreaterThan(10);
  expect(parsed.message.length).toBeLessThan(400);
  expect(parsed.message).not.toMatch(/\n|\bat .+:\d+:\d+/);
  expect(status).toBeGreaterThanOrEqual(400);
  return parsed;
}

describe('the HTTP API: routes', () => {
  it('GET /healthz is 200 {"status":"ok"} when healthy', async () => {
    const { base } = await start();
    const response = await fetch(`${base}/healthz`);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ status: 'ok' });
  });

  it('GET /healthz is 503 with the reason when not', async () => {
    const source = fakeSource();
    const reason = 'not consuming compute.host-a: the broker at 127.0.0.1:5672 is unreachable';
    source.health = async () => ({ ok: false, reason });
    const { base } = await start(source);
    const response = await fetch(`${base}/healthz`);
    expect(response.status).toBe(503);
    expect(await response.json()).toEqual({ status: 'unavailable', reason });
  });

  it('GET /healthz is 503 when the health check itself throws, without its words', async () => {
    const source = fakeSource();
    source.health = async () => {
      throw new Error('secret detail of a bug');
    };
    const { base, logs } = await start(source);
    const response = await fetch(`${base}/healthz`);
    expect(response.status).toBe(503);
    const text = await response.text();
    expect(JSON.parse(text)).toMatchObject({ status: 'unavailable' });
    expect(text).not.toContain('secret detail');
    expect(JSON.stringify(logs())).toContain('secret detail');
  });

  it('GET /metrics is the source\'s text as Prometheus text format 0.0.4', async () => {
    const { base } = await start();
    const response = await fetch(`${base}/metrics`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
    expect(await response.text()).toContain('novalet_builds_total 3\n');
  });

  it('GET /v1/host is the source\'s object as JSON', async () => {
    const { base } = await start();
    const response = await fetch(`${base}/v1/host`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^application\/json/);
    expect(response.headers.get('cache-control')).toBe('no-store');
    expect(await response.json()).toEqual({ verdict: { usable: false, reasons: ['KVM_DEVICE_MISSING'] }, virt_type: 'qemu' });
  });

  it('GET /v1/instances lists the instances', async () => {
    const { base } = await start();
    const response = await fetch(`${base}/v1/instances`);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ instances: [view(UUID, 'web-1')] });
  });

  it('GET /v1/instances/{uuid} is the instance, asked by its UUID in lower case', async () => {
    const source = fakeSource();
    const { base } = await start(source);
    const response = await fetch(`${base}/v1/instances/${UUID.toUpperCase()}`);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual(view(UUID, 'web-1'));
    expect(source.calls).toEqual([`instance ${UUID}`]);
  });

  it('GET /v1/instances/{uuid} of an unknown UUID is 404 INSTANCE_NOT_FOUND', async () => {
    const { base } = await start();
    const response = await fetch(`${base}/v1/instances/${OTHER}`);
    expect(response.status).toBe(404);
    const error = expectError(response.status, response.headers.get('content-type'), await response.text(), 'INSTANCE_NOT_FOUND');
    expect(error.message).toContain(OTHER);
  });

  it('GET /v1/instances/{uuid}/console is text/plain, 100 lines unless lines= says otherwise', async () => {
    const source = fakeSource();
    const { base } = await start(source);
    const response = await fetch(`${base}/v1/instances/${UUID}/console`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('text/plain; charset=utf-8');
    expect(response.headers.get('x-content-type-options')).toBe('nosniff');
    expect(await response.text()).toBe('[    0.000000] Linux version 6.1\nlogin:\n');
    for (const lines of [1, 25, 10000]) expect((await fetch(`${base}/v1/instances/${UUID}/console?lines=${lines}`)).status).toBe(200);
    expect(source.calls).toEqual([`console ${UUID} ${CONSOLE_LINES.default}`, `console ${UUID} 1`, `console ${UUID} 25`, `console ${UUID} 10000`]);
  });

  it('GET /v1/instances/{uuid}/console of an unknown UUID is 404 INSTANCE_NOT_FOUND', async () => {
    const { base } = await start();
    const response = await fetch(`${base}/v1/instances/${OTHER}/console?lines=5`);
    expect(response.status).toBe(404);
    expectError(response.status, response.headers.get('content-type'), await response.text(), 'INSTANCE_NOT_FOUND');
  });

  it('HEAD answers as GET does, without a body', async () => {
    const { base } = await start();
    const response = await fetch(`${base}/v1/instances`, { method: 'HEAD' });
    expect(response.status).toBe(200);
    expect(await response.text()).toBe('');
  });
});

describe('the HTTP API: requests it refuses', () => {
  it('refuses a path parameter that is not a UUID with 400, and never asks the source', async () => {
    const source = fakeSource();
    const { api, base } = await start(source);
    for (const path of ['/v1/instances/not-a-uuid', '/v1/instances/..%2Fetc', `/v1/instances/urn:uuid:${UUID}`, `/v1/instances/${UUID}x/console`, `/v1/instances/%00/console`]) {
      const response = await fetch(`${base}${path}`);
      expect(response.status, path).toBe(400);
      const error = expectError(response.status, response.headers.get('content-type'), await response.text(), 'BAD_REQUEST');
      expect(error.message).toContain('must be a UUID');
    }
    // As written on the wire (fetch would resolve the ..): no route has that shape.
    const dotted = await raw(api.address.port, '/v1/instances/../etc');
    expect(dotted.status).toBe(404);
    expectError(dotted.status, dotted.headers['content-type'], dotted.body, 'NOT_FOUND');
    expect(source.calls).toEqual([]);
  });

  it('refuses lines= that is not an integer from 1 to 10000 with 400', async () => {
    const source = fakeSource();
    const { base } = await start(source);
    for (const lines of ['abc', '0', '-1', '1.5', '999999', '10001', '', '5&lines=6']) {
      const response = await fetch(`${base}/v1/instances/${UUID}/console?lines=${lines}`);
      expect(response.status, lines).toBe(400);
      const error = expectError(response.status, response.headers.get('content-type'), await response.text(), 'BAD_REQUEST');
      expect(error.message).toBe('The query parameter lines must be an integer from 1 to 10000 (default 100).');
    }
    expect(source.calls).toEqual([]);
  });

  it('refuses a query parameter the route does not take, naming it escaped', async () => {
    const { base } = await start();
    const console = await fetch(`${base}/v1/instances/${UUID}/console?lines=5&follow=1`);
    expect(console.status).toBe(400);
    expect(expectError(console.status, console.headers.get('content-type'), await console.text(), 'BAD_REQUEST').message).toContain("'follow'");
    const host = await fetch(`${base}/v1/host?x=%0Ay`);
    expect(host.status).toBe(400);
    expect(expectError(host.status, host.headers.get('content-type'), await host.text(), 'BAD_REQUEST').message).toContain("'x'");
  });

  it('answers an unknown route 404 in the error shape, showing a short escaped excerpt of the path', async () => {
    const { base } = await start();
    const response = await fetch(`${base}/v2/nothing`);
    expect(response.status).toBe(404);
    const error = expectError(response.status, response.headers.get('content-type'), await response.text(), 'NOT_FOUND');
    expect(error.message).toContain("'/v2/nothing'");
    expect(error.message).toContain('/v1/instances/{uuid}/console');
    const long = await fetch(`${base}/${'a'.repeat(1500)}`);
    expect(long.status).toBe(404);
    const longError = expectError(long.status, long.headers.get('content-type'), await long.text(), 'NOT_FOUND');
    expect(longError.message).toContain(`'/${'a'.repeat(79)}'…`);
  });

  it('answers another method on a route 405 with Allow: GET, HEAD, before reading any body', async () => {
    const { api, base } = await start();
    for (const method of ['POST', 'PUT', 'DELETE', 'PATCH']) {
      const response = await fetch(`${base}/v1/instances/${UUID}`, { method, body: JSON.stringify({ state: 'deleted' }), headers: { 'content-type': 'application/json' } });
      expect(response.status, method).toBe(405);
      expect(response.headers.get('allow')).toBe('GET, HEAD');
      expectError(response.status, response.headers.get('content-type'), await response.text(), 'METHOD_NOT_ALLOWED');
    }
    // A body larger than the API's bodyLimit changes nothing: the method is refused first.
    const big = await fetch(`${base}/healthz`, { method: 'POST', body: 'x'.repeat(100_000) });
    expect(big.status).toBe(405);
    expectError(big.status, big.headers.get('content-type'), await big.text(), 'METHOD_NOT_ALLOWED');
    // A method no route has at all is an unknown route.
    const other = await raw(api.address.port, '/v1/host', { method: 'PROPFIND' });
    expect(other.status).toBe(404);
    expectError(other.status, other.headers['content-type'], other.body, 'NOT_FOUND');
  });

  it('refuses a GET with a body', async () => {
    const { api } = await start();
    const answer = await raw(api.address.port, '/v1/host', { headers: { 'content-type': 'application/json', 'content-length': '2' }, body: '{}' });
    expect(answer.status).toBe(400);
    expect(expectError(answer.status, answer.headers['content-type'], answer.body, 'BAD_REQUEST').message).toBe('A GET request takes no body.');
  });

  it('answers a long URL 414 and a huge one 431 (Node\'s parser), both in the error shape', async () => {
    const { base } = await start();
    const long = await fetch(`${base}/v1/instances?${'q'.repeat(4000)}`);
    expect(long.status).toBe(414);
    expectError(long.status, long.headers.get('content-type'), await long.text(), 'URI_TOO_LONG');
    const huge = await fetch(`${base}/v1/instances/${'x'.repeat(20_000)}`);
    expect(huge.status).toBe(431);
    const error = expectError(huge.status, huge.headers.get('content-type'), await huge.text(), 'HEADERS_TOO_LARGE');
    expect(error.message).not.toContain('xxxx');
  });

  it('answers a path that is not valid percent-encoding 400 without echoing it', async () => {
    const { base } = await start();
    const response = await fetch(`${base}/v1/instances/%E0%A4%A`);
    expect(response.status).toBe(400);
    const text = await response.text();
    expectError(response.status, response.headers.get('content-type'), text, 'BAD_REQUEST');
    expect(text).not.toContain('%E0');
  });

  it('answers a failing source 500 INTERNAL, with neither the error\'s words nor its stack; the log has them', async () => {
    const source = fakeSource();
    source.instances = async () => {
      throw new Error('store exploded at /var/lib/novalet/instances/secret.json');
    };
    source.metrics = () => {
      throw new TypeError('cannot read properties of undefined');
    };
    const { base, logs } = await start(source);
    for (const path of ['/v1/instances', '/metrics']) {
      const response = await fetch(`${base}${path}`);
      expect(response.status, path).toBe(500);
      const text = await response.text();
      expect(JSON.parse(text)).toEqual({ code: 'INTERNAL', message: "The request failed inside novalet; the agent's log has the details." });
      expect(text).not.toMatch(/exploded|undefined|http-api|\.ts/);
    }
    const failures = logs().filter((line) => line.level === 50);
    expect(failures).toHaveLength(2);
    expect(JSON.stringify(failures[0])).toContain('store exploded');
  });

  it('answers a source that does not answer in time 503 TIMEOUT', async () => {
    const source = fakeSource();
    source.instances = () => new Promise(() => undefined);
    const { base } = await start(source, { handlerTimeoutMs: 200 });
    const response = await fetch(`${base}/v1/instances`);
    expect(response.status).toBe(503);
    expectError(response.status, response.headers.get('content-type'), await response.text(), 'TIMEOUT');
  });
});

describe('the HTTP API: its server', () => {
  it('logs each request as a JSON line with the route, not the raw URL', async () => {
    const { base, logs } = await start();
    await fetch(`${base}/v1/instances/${UUID}?token=hunter2`);
    const requests = logs().filter((line) => line.msg === 'HTTP API request');
    expect(requests).toEqual([expect.objectContaining({ method: 'GET', route: '/v1/instances/:uuid', status: 400 })]);
    expect(JSON.stringify(logs())).not.toContain('hunter2');
  });

  it('answers a client that does not finish its request in time 408, in the error shape, and closes the connection', async () => {
    const { api } = await start(fakeSource(), { requestTimeoutMs: 500 });
    const socket = net.connect(api.address.port, '127.0.0.1');
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
    const { api } = await start();
    expect(api.address.host).toBe('127.0.0.1');
    expect(api.address.port).toBeGreaterThan(0);
  });

  it('close() ends open connections too: a request under way does not hold it', async () => {
    const source = fakeSource();
    let asked!: () => void;
    const wasAsked = new Promise<void>((resolve) => (asked = resolve));
    source.host = () => {
      asked();
      return new Promise(() => undefined);
    };
    const { api, base } = await start(source, { handlerTimeoutMs: 60_000 });
    const pending = fetch(`${base}/v1/host`).then(
      () => 'answered',
      () => 'connection closed',
    );
    await wasAsked;
    const began = Date.now();
    await api.close();
    expect(Date.now() - began).toBeLessThan(2000);
    expect(await pending).toBe('connection closed');
    await expect(fetch(`${base}/healthz`)).rejects.toThrow();
  });

  it('a port in use is API_LISTEN_FAILED naming [api] port and the remedy', async () => {
    const holder = net.createServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    const port = (holder.address() as net.AddressInfo).port;
    try {
      const error = await startHttpApi(fakeSource(), { listen: '127.0.0.1', port }, capturedLogger().log).catch((e: unknown) => e);
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
    const notHere = await startHttpApi(fakeSource(), { listen: '192.0.2.1', port: 0 }, capturedLogger().log).catch((e: unknown) => e);
    expect(notHere).toMatchObject({ code: 'API_LISTEN_FAILED' });
    expect((notHere as NovaletError).message).toContain('not an address of this host');
    expect((notHere as NovaletError).remedy).toContain('[api] listen');
    for (const port of [-1, 65536, 1.5]) {
      const bad = await startHttpApi(fakeSource(), { listen: '127.0.0.1', port }, capturedLogger().log).catch((e: unknown) => e);
      expect(bad, String(port)).toMatchObject({ code: 'API_LISTEN_FAILED' });
      expect((bad as NovaletError).message).toContain('[api] port');
    }
  });
});
