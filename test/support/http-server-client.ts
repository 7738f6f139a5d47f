/**
 * For the tests of service/http-server.ts: a server with the compute
 * routes on a fake source, on 127.0.0.1 with a port of its own (closed
 * after each test), the token every request of those tests carries, raw
 * requests for what fetch will not send, and the check of the error shape.
 */
import http from 'node:http';
import type { FastifyPluginAsync } from 'fastify';
import { afterEach, expect } from 'vitest';
import { computeRoutes, type ComputeApiSource, type InstanceView } from '../../agent/http-routes.js';
import type { ApiAuth } from '../../service/api-token.js';
import { startHttpServer, type HealthState, type HttpServer } from '../../service/http-server.js';
import { capturedLogger } from './captured-logger.js';

export const UUID = '123e4567-e89b-12d3-a456-426614174000';
export const OTHER = '9b2f4c1e-0d3a-4e5f-8a7b-6c5d4e3f2a1b';
/** A token as loadApiToken makes them: 43 characters of base64url. */
export const TOKEN = 'q3J9x0-Lw_7dVt2eKc8RZm4yHbN5sPfA1uGiEoTjXkl';

export const withToken = (token = TOKEN): Record<string, string> => ({ authorization: `Bearer ${token}` });
export const AUTH: RequestInit = { headers: withToken() };

export const view = (uuid: string, name: string): InstanceView => ({
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
export function fakeSource(): ComputeApiSource & { calls: string[] } {
  const calls: string[] = [];
  const instances = new Map([[UUID, view(UUID, 'web-1')]]);
  return {
    calls,
    host: async () => ({ verdict: { usable: false, reasons: ['KVM_DEVICE_MISSING'] }, virt_type: 'qemu' }),
    instances: async () => {
      calls.push('instances');
      return [...instances.values()];
    },
    instance: async (uuid) => {
      calls.push(`instance ${uuid}`);
      return instances.get(uuid) ?? null;
    },
    console: async (uuid, lines) => {
      calls.push(`console ${uuid} ${lines}`);
      return instances.has(uuid) ? ['[    0.000000] Linux version 6.1', 'login:'] : null;
    },
  };
}

const started: HttpServer[] = [];
afterEach(async () => {
  await Promise.all(started.splice(0).map((server) => server.close()));
});

export interface StartExtra {
  handlerTimeoutMs?: number;
  requestTimeoutMs?: number;
  auth?: ApiAuth;
  health?: () => Promise<HealthState>;
  metrics?: () => Promise<string>;
  /** Other routes than the compute service's. */
  routes?: FastifyPluginAsync[];
}

export async function startServer(source: ComputeApiSource = fakeSource(), extra: StartExtra = {}) {
  const logger = capturedLogger();
  const server = await startHttpServer(
    {
      listen: '127.0.0.1',
      port: 0,
      auth: extra.auth ?? { mode: 'token', token: TOKEN },
      log: logger.log,
      health: extra.health ?? (async () => ({ status: 'ok', reasons: [] })),
      metrics: extra.metrics ?? (async () => '# HELP novalet_builds_total Builds.\n# TYPE novalet_builds_total counter\nnovalet_builds_total 3\n'),
      ...(extra.handlerTimeoutMs === undefined ? {} : { handlerTimeoutMs: extra.handlerTimeoutMs }),
      ...(extra.requestTimeoutMs === undefined ? {} : { requestTimeoutMs: extra.requestTimeoutMs }),
    },
    extra.routes ?? [computeRoutes(source)],
  );
  started.push(server);
  return { server, base: `http://127.0.0.1:${server.address.port}`, logs: () => logger.lines, raw: logger.raw };
}

export interface RawAnswer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/**
 * A request as written, for what fetch will not send: a path with `..`
 * (fetch resolves it), a GET with a body, a method fetch refuses.
 */
export function raw(port: number, path: string, options: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<RawAnswer> {
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
export function expectError(status: number, contentType: string | null | undefined, body: string, code: string): { code: string; message: string } {
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
