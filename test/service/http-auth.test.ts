/**
 * The token check of service/http-server.ts: every route but /healthz and
 * /metrics wants `Authorization: Bearer <token>`; without it, or with
 * another, the answer is 401 with `WWW-Authenticate: Bearer` in the one
 * error shape — the same answer whatever was asked, so that a caller
 * without the token learns no route, no instance UUID, not even whether a
 * path is well formed — and the service's source is never asked.
 */
import { describe, expect, it } from 'vitest';
import { expectError, fakeSource, OTHER, raw, startServer, TOKEN, UUID, withToken } from '../support/http-server-client.js';

const ROUTES = ['/v1/host', '/v1/instances', `/v1/instances/${UUID}`, `/v1/instances/${UUID}/console`];
const WRONG = TOKEN.slice(0, -1) + (TOKEN.endsWith('A') ? 'B' : 'A');

interface Answer {
  status: number;
  authenticate: string | undefined;
  body: string;
}

async function ask(port: number, path: string, options: { method?: string; authorization?: string } = {}): Promise<Answer> {
  const answer = await raw(port, path, { method: options.method ?? 'GET', headers: options.authorization === undefined ? {} : { authorization: options.authorization } });
  return { status: answer.status, authenticate: answer.headers['www-authenticate'] as string | undefined, body: answer.body };
}

function expectUnauthorized(answer: Answer, what: string): void {
  expect(answer.status, what).toBe(401);
  expect(answer.authenticate, what).toMatch(/^Bearer\b/);
  const error = expectError(answer.status, 'application/json', answer.body, 'UNAUTHORIZED');
  expect(error.message).toContain('Authorization: Bearer');
}

describe('the HTTP server: the bearer token', () => {
  it('answers each route 401 without the token and with a wrong one, and as asked with the right one; the source is asked only then', async () => {
    const source = fakeSource();
    const { server } = await startServer(source);
    const port = server.address.port;
    for (const route of ROUTES) {
      expectUnauthorized(await ask(port, route), `${route} without a token`);
      expectUnauthorized(await ask(port, route, { authorization: `Bearer ${WRONG}` }), `${route} with a wrong token`);
      expect(source.calls, route).toEqual([]);
      const right = await ask(port, route, { authorization: `Bearer ${TOKEN}` });
      expect(right.status, `${route} with the token`).toBe(200);
      expect(right.authenticate).toBeUndefined();
      source.calls.length = 0;
    }
  });

  it('leaves /healthz and /metrics open: probes and scrapers carry no token', async () => {
    const { server } = await startServer();
    for (const route of ['/healthz', '/metrics']) {
      expect((await ask(server.address.port, route)).status, route).toBe(200);
      expect((await ask(server.address.port, route, { authorization: `Bearer ${WRONG}` })).status, route).toBe(200);
    }
  });

  it('gives a caller without the token one answer whatever it asks: no route, UUID or shape is revealed', async () => {
    const { server } = await startServer();
    const port = server.address.port;
    const asked: [string, { method?: string }][] = [
      ['/v1/host', {}],
      ['/v1/nothing', {}],
      [`/v1/instances/${OTHER}`, {}],
      [`/v1/instances/${OTHER}/console?lines=0`, {}],
      ['/v1/instances/not-a-uuid', {}],
      [`/v1/instances/${'a'.repeat(150)}`, {}],
      ['/v1/instances/%E0%A4%A', {}],
      ['/v1/host', { method: 'POST' }],
      ['/v1/host', { method: 'PROPFIND' }],
      ['/healthz/', {}],
      ['//healthz', {}],
      ['/HEALTHZ', {}],
      ['/metrics/../v1/host', {}],
    ];
    const answers = await Promise.all(asked.map(([path, options]) => ask(port, path, options)));
    for (const [index, answer] of answers.entries()) expectUnauthorized(answer, `${asked[index]![1].method ?? 'GET'} ${asked[index]![0]}`);
    expect(new Set(answers.map((a) => JSON.stringify(a))).size).toBe(1);
    // With the token the same requests get their own answers: the uniformity above is the check's doing.
    const told = await Promise.all(asked.map(([path, options]) => ask(port, path, { ...options, authorization: `Bearer ${TOKEN}` })));
    expect(told.map((a) => a.status)).toEqual([200, 404, 404, 400, 400, 400, 400, 405, 404, 404, 404, 404, 404]);
  });

  it('takes the scheme in any case and nothing but the exact token', async () => {
    const { server } = await startServer();
    const port = server.address.port;
    for (const authorization of [`Bearer ${TOKEN}`, `bearer ${TOKEN}`, `BEARER ${TOKEN}`, `Bearer  ${TOKEN}`]) {
      expect((await ask(port, '/v1/host', { authorization })).status, authorization).toBe(200);
    }
    for (const authorization of [
      TOKEN,
      'Bearer',
      'Bearer ',
      `Bearer ${TOKEN.slice(0, -1)}`,
      `Bearer ${TOKEN}x`,
      `Bearer ${TOKEN} ${TOKEN}`,
      `Bearer ${TOKEN.toUpperCase()}`,
      `Basic ${Buffer.from(`novalet:${TOKEN}`).toString('base64')}`,
      `Token ${TOKEN}`,
    ]) {
      expectUnauthorized(await ask(port, '/v1/host', { authorization }), authorization);
    }
    // Never from the query: a URL ends up in logs and histories.
    expectUnauthorized(await ask(port, `/v1/host?access_token=${TOKEN}`), 'access_token');
  });

  it('never writes a token to its log, the right one or a wrong one', async () => {
    const { server, raw: lines } = await startServer();
    await ask(server.address.port, '/v1/host', { authorization: `Bearer ${TOKEN}` });
    await ask(server.address.port, '/v1/host', { authorization: `Bearer ${WRONG}` });
    await ask(server.address.port, '/v1/nothing', { authorization: `Bearer ${WRONG}` });
    expect(lines.length).toBeGreaterThan(0);
    const text = lines.join('\n');
    expect(text).not.toContain(TOKEN);
    expect(text).not.toContain(WRONG);
  });

  it('with [api] auth = none, answers every route without a token', async () => {
    const { server } = await startServer(fakeSource(), { auth: { mode: 'none', token: null } });
    for (const route of ROUTES) {
      const answer = await ask(server.address.port, route);
      expect(answer.status, route).toBe(200);
    }
    const told = await raw(server.address.port, '/v1/nothing', { headers: withToken('whatever') });
    expect(told.status).toBe(404);
  });
});
