/**
 * novalet's HTTP API ([api] listen, [api] port): read-only views of this
 * compute host for operators and probes — health, Prometheus metrics, the
 * host's KVM verdict and capabilities, the instances and their consoles.
 *
 * Everything is GET; every request is checked by fastify's JSON schemas
 * (params, querystring) and by one onRequest hook (URL length, no body,
 * wrong method), and every error is JSON `{"code": …, "message": …}`: no
 * stack, and raw input shown only as a short escaped excerpt
 * (config/quote-for-message.ts). fastify's own logger is off; requests are
 * logged here through the project's pino logger, as JSON lines.
 *
 * fastify is imported when the API starts, so importing this file (for its
 * types) costs a command nothing.
 */
import type { Server } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from '../config/logger.js';
import { NovaletError } from '../config/novalet-error.js';
import { quotePrefix, quoteForMessage } from '../config/quote-for-message.js';

import type { InstanceView } from './instance-view.js';

export type { InstanceView };

/** `reason` names what is wrong, e.g. "not consuming compute.<host>: the broker at host:port is unreachable". */
export interface HealthState {
  ok: boolean;
  reason: string | null;
}

export interface ApiSource {
  health(): Promise<HealthState>;
  /** probe, verdict and capabilities: any JSON object. */
  host(): Promise<Record<string, unknown>>;
  instances(): Promise<InstanceView[]>;
  instance(uuid: string): Promise<InstanceView | null>;
  /** null: no such instance. */
  console(uuid: string, lines: number): Promise<string[] | null>;
  /** Prometheus text exposition. */
  metrics(): string;
}

export interface HttpApi {
  close(): Promise<void>;
  readonly address: { host: string; port: number };
}

export interface HttpApiOptions {
  /** [api] listen: an IP address or a name this host resolves. */
  listen: string;
  /** [api] port; 0 (tests) takes a free port, which `address` reports. */
  port: number;
  /** How long a route may take before it answers 503 TIMEOUT (default 10 s). */
  handlerTimeoutMs?: number;
  /** How long a client has to send its whole request before it is answered 408 (default 10 s). */
  requestTimeoutMs?: number;
}

/**
 * The codes of errors only the HTTP API answers with. They are not
 * NovaletErrors (nothing raises them; they exist only on the wire), so they
 * live here and not in config/error-codes.ts. The API also answers with two
 * codes of the catalogue: INSTANCE_NOT_FOUND (an unknown UUID) and INTERNAL
 * (a failure inside novalet).
 */
export type HttpErrorCode =
  | 'BAD_REQUEST' // a parameter, query or body the route does not take
  | 'NOT_FOUND' // no such route
  | 'METHOD_NOT_ALLOWED' // the route exists, but only for GET and HEAD
  | 'URI_TOO_LONG' // the request target is longer than MAX_URL_LENGTH
  | 'HEADERS_TOO_LARGE' // the request line and headers exceed MAX_HEADER_BYTES
  | 'REQUEST_TIMEOUT' // the client did not send its request in time
  | 'TIMEOUT'; // the route did not answer within handlerTimeoutMs
export type ApiErrorCode = HttpErrorCode | 'INSTANCE_NOT_FOUND' | 'INTERNAL';

export interface ApiError {
  code: ApiErrorCode;
  message: string;
}

export const CONSOLE_LINES = { min: 1, max: 10_000, default: 100 } as const;
/** The longest request target taken: the longest route with its query is under 100 characters. */
export const MAX_URL_LENGTH = 2048;
/** Node's limit on the request line and headers together (its default is 16 KiB). */
export const MAX_HEADER_BYTES = 8192;
/** No route takes a body; the limit is a second guard behind the hook that refuses any body. */
const BODY_LIMIT = 1024;
const DEFAULT_HANDLER_TIMEOUT_MS = 10_000;
const DEFAULT_REQUEST_TIMEOUT_MS = 10_000;

const UUID_PATTERN = '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$';
const ROUTES = ['/healthz', '/metrics', '/v1/host', '/v1/instances', '/v1/instances/:uuid', '/v1/instances/:uuid/console'] as const;
const ROUTE_LIST = ROUTES.map((route) => route.replace(':uuid', '{uuid}')).join(', ');
/** Every method fastify routes but GET and HEAD: on a known path they answer 405, not 404. */
const OTHER_METHODS = ['POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'] as const;

const noQuery = { type: 'object', properties: {}, additionalProperties: false } as const;
const uuidParams = {
  type: 'object',
  properties: { uuid: { type: 'string', pattern: UUID_PATTERN } },
  required: ['uuid'],
  additionalProperties: false,
} as const;
const consoleQuery = {
  type: 'object',
  properties: { lines: { type: 'integer', minimum: CONSOLE_LINES.min, maximum: CONSOLE_LINES.max, default: CONSOLE_LINES.default } },
  additionalProperties: false,
} as const;

/** The sentence for a request a schema refused, by where it failed: never the raw value. */
function validationMessage(error: FastifyError): string {
  const first = error.validation?.[0];
  const context = error.validationContext ?? 'request';
  const field = first?.instancePath.replace(/^\//, '') ?? '';
  if (context === 'params' && field === 'uuid') {
    return 'The instance UUID in the path must be a UUID: 32 hexadecimal digits in groups of 8-4-4-4-12, such as 123e4567-e89b-12d3-a456-426614174000.';
  }
  if (context === 'querystring' && field === 'lines') {
    return `The query parameter lines must be an integer from ${CONSOLE_LINES.min} to ${CONSOLE_LINES.max} (default ${CONSOLE_LINES.default}).`;
  }
  if (first?.keyword === 'additionalProperties') {
    const name = String((first.params as { additionalProperty?: unknown }).additionalProperty ?? '');
    const takes = context === 'querystring' ? ' (only /v1/instances/{uuid}/console takes one: lines)' : '';
    return `The ${context === 'querystring' ? 'query parameter' : context} ${quotePrefix(name, 40)} is not one this route takes${takes}.`;
  }
  return `The request's ${context} is not one this route takes.`;
}

function errorBody(code: ApiErrorCode, message: string): ApiError {
  return { code, message };
}

function fail(reply: FastifyReply, status: number, code: ApiErrorCode, message: string): FastifyReply {
  return reply.code(status).type('application/json; charset=utf-8').send(errorBody(code, message));
}

/** The path of a request without its query, shortened and escaped: how an error names what was asked. */
function shownPath(url: string): string {
  const path = url.split('?', 1)[0] ?? '';
  return quotePrefix(path, 80);
}

function hasBody(request: FastifyRequest): boolean {
  const length = request.headers['content-length'];
  return request.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

/** The raw HTTP response for errors Node's parser finds before fastify sees a request. */
function rawErrorResponse(status: number, code: ApiErrorCode, message: string): string {
  const body = JSON.stringify(errorBody(code, message));
  const reason = { 400: 'Bad Request', 408: 'Request Timeout', 431: 'Request Header Fields Too Large' }[status] ?? 'Bad Request';
  return `HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`;
}

function listenError(error: NodeJS.ErrnoException, options: HttpApiOptions): NovaletError {
  const where = `${quoteForMessage(options.listen)} port ${options.port} ([api] listen, [api] port)`;
  switch (error.code) {
    case 'EADDRINUSE':
      return new NovaletError(
        'API_LISTEN_FAILED',
        `The HTTP API cannot listen on ${where}: another process holds that port.`,
        `Stop the process that holds it (ss -ltnp 'sport = :${options.port}' names it) or set [api] port to a free port.`,
      );
    case 'EADDRNOTAVAIL':
      return new NovaletError(
        'API_LISTEN_FAILED',
        `The HTTP API cannot listen on ${where}: that is not an address of this host.`,
        'Set [api] listen to an address of this host (ip -brief address lists them), 127.0.0.1 for this host only, or 0.0.0.0 for every address.',
      );
    case 'EACCES':
      return new NovaletError(
        'API_LISTEN_FAILED',
        `The HTTP API cannot listen on ${where}: a port below 1024 needs the CAP_NET_BIND_SERVICE capability.`,
        'Set [api] port to 1024 or above, or give the service CAP_NET_BIND_SERVICE (AmbientCapabilities= in its unit).',
      );
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
    case 'EAI_NONAME':
      return new NovaletError(
        'API_LISTEN_FAILED',
        `The HTTP API cannot listen on ${where}: [api] listen is neither an IP address nor a name this host resolves.`,
        'Set [api] listen to an IP address of this host, such as 127.0.0.1 or 0.0.0.0.',
      );
    default:
      return new NovaletError(
        'API_LISTEN_FAILED',
        `The HTTP API cannot listen on ${where}: ${quotePrefix(error.message, 200)}.`,
        'Check [api] listen and [api] port: an IP address of this host and a free port from 1 to 65535.',
      );
  }
}

/**
 * Starts the API on `options.listen`:`options.port` and resolves once it
 * listens. A failure to listen is a NovaletError API_LISTEN_FAILED that names
 * [api] listen and port and the remedy.
 */
export async function startHttpApi(source: ApiSource, options: HttpApiOptions, log: Logger): Promise<HttpApi> {
  if (!Number.isInteger(options.port) || options.port < 0 || options.port > 65535) {
    throw new NovaletError(
      'API_LISTEN_FAILED',
      `The HTTP API cannot listen on port ${quotePrefix(String(options.port), 20)} ([api] port): a port is an integer from 1 to 65535.`,
      'Set [api] port to a free port from 1 to 65535.',
    );
  }
  if (typeof options.listen !== 'string' || options.listen.trim() === '') {
    throw new NovaletError('API_LISTEN_FAILED', 'The HTTP API cannot listen: [api] listen is empty.', 'Set [api] listen to an IP address of this host, such as 127.0.0.1.');
  }
  const { fastify } = await import('fastify');

  const requestTimeout = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
  const app = fastify({
    logger: false,
    // Node checks the request and header timeouts every connectionsCheckingInterval (30 s unless told).
    http: { maxHeaderSize: MAX_HEADER_BYTES, headersTimeout: requestTimeout, connectionsCheckingInterval: Math.min(5_000, requestTimeout) },
    bodyLimit: BODY_LIMIT,
    // A whole request within requestTimeout (a slow client does not hold a connection); an idle socket closed after 60 s; keep-alive shorter than a proxy's usual 60 s.
    requestTimeout,
    connectionTimeout: 60_000,
    keepAliveTimeout: 5_000,
    maxRequestsPerSocket: 1000,
    handlerTimeout: options.handlerTimeoutMs ?? DEFAULT_HANDLER_TIMEOUT_MS,
    // close() ends keep-alive connections too, so the service's shutdown is not held by an idle client.
    forceCloseConnections: true,
    return503OnClosing: true,
    exposeHeadRoutes: true,
    routerOptions: { maxParamLength: 100, ignoreTrailingSlash: false, ignoreDuplicateSlashes: false, caseSensitive: true },
    // Extra query parameters are refused, not silently dropped; "5" becomes 5 for the integer of lines.
    ajv: { customOptions: { removeAdditional: false, coerceTypes: 'array', useDefaults: true, allErrors: false } },
    frameworkErrors: (error: FastifyError, _request: FastifyRequest, reply: FastifyReply) => {
      // A path with bad percent-encoding, or a parameter longer than maxParamLength: fastify's own answer would echo the path.
      fail(reply, 400, 'BAD_REQUEST', error.code === 'FST_ERR_MAX_PARAM_LENGTH' ? 'A path segment is longer than any this API takes.' : 'The path is not valid percent-encoded UTF-8.');
    },
    clientErrorHandler: (error: NodeJS.ErrnoException, socket: Socket) => {
      if (error.code === 'ECONNRESET' || socket.destroyed) return;
      let response: string;
      if (error.code === 'HPE_HEADER_OVERFLOW') {
        response = rawErrorResponse(431, 'HEADERS_TOO_LARGE', `The request line and headers are larger than this API takes (${MAX_HEADER_BYTES} bytes).`);
      } else if (error.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
        response = rawErrorResponse(408, 'REQUEST_TIMEOUT', 'The request was not received in time.');
      } else {
        response = rawErrorResponse(400, 'BAD_REQUEST', 'The request is not valid HTTP/1.1.');
      }
      log.debug({ component: 'api', error: error.code }, 'HTTP API: a client sent a request that is not HTTP the API takes');
      if (socket.writable) socket.write(response);
      socket.destroy();
    },
  });

  app.addHook('onRequest', async (request, reply) => {
    if (request.url.length > MAX_URL_LENGTH) {
      return fail(reply, 414, 'URI_TOO_LONG', `The request target is ${request.url.length} characters long; this API takes at most ${MAX_URL_LENGTH}.`);
    }
    if (request.is404) {
      return fail(reply, 404, 'NOT_FOUND', `No route ${request.method} ${shownPath(request.url)}: this API has GET ${ROUTE_LIST}.`);
    }
    const config = request.routeOptions.config as { methodNotAllowed?: boolean };
    if (config.methodNotAllowed) {
      void reply.header('allow', 'GET, HEAD');
      return fail(reply, 405, 'METHOD_NOT_ALLOWED', `${request.method} is not allowed on ${request.routeOptions.url?.replace(':uuid', '{uuid}')}: this API takes GET and HEAD only.`);
    }
    if (hasBody(request)) {
      return fail(reply, 400, 'BAD_REQUEST', `A ${request.method} request takes no body.`);
    }
    return undefined;
  });

  app.addHook('onSend', async (_request, reply, payload) => {
    // The answers are this moment's state of the host, and JSON or text, never a page to sniff.
    void reply.header('cache-control', 'no-store');
    void reply.header('x-content-type-options', 'nosniff');
    return payload;
  });

  app.addHook('onResponse', async (request, reply) => {
    // The route's pattern, not the raw URL: what was asked is in the route and the status.
    log.debug({ component: 'api', method: request.method, route: request.routeOptions.url ?? null, status: reply.statusCode, ms: Math.round(reply.elapsedTime) }, 'HTTP API request');
  });

  app.setNotFoundHandler((request, reply) => {
    fail(reply, 404, 'NOT_FOUND', `No route ${request.method} ${shownPath(request.url)}: this API has GET ${ROUTE_LIST}.`);
  });

  app.setErrorHandler((error: FastifyError, request, reply) => {
    if (error.validation) return fail(reply, 400, 'BAD_REQUEST', validationMessage(error));
    if (error.code === 'FST_ERR_HANDLER_TIMEOUT') {
      log.warn({ component: 'api', route: request.routeOptions.url ?? null }, 'HTTP API: a route did not answer in time');
      return fail(reply, 503, 'TIMEOUT', 'novalet did not answer in time; try again.');
    }
    const status = error.statusCode ?? 500;
    if (status >= 400 && status < 500) return fail(reply, status, 'BAD_REQUEST', 'The request is not one this API takes.');
    log.error({ component: 'api', route: request.routeOptions.url ?? null, err: error }, 'HTTP API: a request failed inside novalet');
    return fail(reply, 500, 'INTERNAL', "The request failed inside novalet; the agent's log has the details.");
  });

  const uuidOf = (request: FastifyRequest): string => (request.params as { uuid: string }).uuid.toLowerCase();
  const notFound = (reply: FastifyReply, uuid: string) => fail(reply, 404, 'INSTANCE_NOT_FOUND', `No instance ${uuid} is on this host.`);

  app.get('/healthz', { schema: { querystring: noQuery } }, async (_request, reply) => {
    let state: HealthState;
    try {
      state = await source.health();
    } catch (error) {
      log.error({ component: 'api', err: error }, 'HTTP API: the health check failed');
      state = { ok: false, reason: "the health check itself failed; the agent's log has the details" };
    }
    if (state.ok) return reply.code(200).send({ status: 'ok' });
    return reply.code(503).send({ status: 'unavailable', reason: state.reason ?? 'unknown' });
  });

  app.get('/metrics', { schema: { querystring: noQuery } }, async (_request, reply) => {
    const text = source.metrics();
    return reply.type('text/plain; version=0.0.4; charset=utf-8').send(text);
  });

  app.get('/v1/host', { schema: { querystring: noQuery } }, async () => source.host());

  app.get('/v1/instances', { schema: { querystring: noQuery } }, async () => ({ instances: await source.instances() }));

  app.get('/v1/instances/:uuid', { schema: { params: uuidParams, querystring: noQuery } }, async (request, reply) => {
    const uuid = uuidOf(request);
    const instance = await source.instance(uuid);
    return instance === null ? notFound(reply, uuid) : instance;
  });

  app.get('/v1/instances/:uuid/console', { schema: { params: uuidParams, querystring: consoleQuery } }, async (request, reply) => {
    const uuid = uuidOf(request);
    const { lines } = request.query as { lines: number };
    const text = await source.console(uuid, lines);
    if (text === null) return notFound(reply, uuid);
    return reply.type('text/plain; charset=utf-8').send(text.length === 0 ? '' : `${text.join('\n')}\n`);
  });

  for (const url of ROUTES) {
    app.route({ method: [...OTHER_METHODS], url, config: { methodNotAllowed: true }, handler: async () => undefined });
  }

  try {
    await app.listen({ host: options.listen, port: options.port });
  } catch (error) {
    await app.close().catch(() => undefined);
    throw listenError(error as NodeJS.ErrnoException, options);
  }
  const info = (app.server as Server).address();
  const address = info !== null && typeof info === 'object' ? { host: info.address, port: info.port } : { host: options.listen, port: options.port };
  log.info({ component: 'api', host: address.host, port: address.port }, 'HTTP API listening');

  let closing: Promise<void> | null = null;
  return {
    address,
    close: () => (closing ??= app.close().then(() => log.info({ component: 'api' }, 'HTTP API closed'))),
  };
}
