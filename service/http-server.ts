/**
 * The HTTP server every novalet service runs ([api] listen, [api] port):
 * hardened fastify with `/healthz` and `/metrics` of its own, extended by
 * each service with its routes as fastify plugins (encapsulated: a
 * plugin's hooks and decorations stay its own; the server's hooks, error
 * handler and not-found handler apply to it).
 *
 * What every route gets from here:
 * - authentication: every route but `/healthz` and `/metrics` wants
 *   `Authorization: Bearer <token>` (service/api-token.ts). A request
 *   without the token is answered 401 before anything else is looked at,
 *   the same whether the route exists or not, so a caller without the token
 *   learns no route and no instance UUID;
 * - limits: URL length (414), request line and headers (431, Node's
 *   parser), no body on GET or HEAD, a small body limit, a parameter
 *   length, time to send a request (408) and to answer it (503 TIMEOUT);
 * - 404 for an unknown route, 405 with `Allow` for another method on a
 *   known one, found from the routes the plugins registered;
 * - one error shape, JSON `{"code", "message"}` (service/http-errors.ts),
 *   for every refusal, Node's own parser errors included; no stack;
 * - a debug log line per request with the route's pattern, not the raw URL;
 *   never a header (the token is one).
 *
 * fastify is imported when the server starts, so importing this file (for
 * its types) costs a command nothing.
 */
import type { Server } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyError, FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from '../config/logger.js';
import { bearerMatcher, type ApiAuth } from './api-token.js';
import { checkListenTarget, JSON_TYPE, listenError, rawErrorResponse, sendError, shownPath, validationMessage, type ValidationMessages } from './http-errors.js';

/** ok and degraded answer 200 (the service serves), unavailable 503; `reasons` say what is wrong, empty when ok. */
export interface HealthState {
  status: 'ok' | 'degraded' | 'unavailable';
  reasons: string[];
}

export interface HttpServerOptions {
  /** [api] listen: an IP address or a name this host resolves. */
  listen: string;
  /** [api] port; 0 (tests) takes a free port, which `address` reports. */
  port: number;
  /** From loadApiToken (service/api-token.ts). */
  auth: ApiAuth;
  log: Logger;
  /** How long a route may take before it answers 503 TIMEOUT (default 10 s). */
  handlerTimeoutMs?: number;
  /** How long a client has to send its whole request before it is answered 408 (default 10 s). */
  requestTimeoutMs?: number;
  health: () => Promise<HealthState>;
  /** Prometheus text exposition 0.0.4 (service/metrics.ts). */
  metrics: () => Promise<string>;
}

export interface HttpServer {
  readonly address: { host: string; port: number };
  close(): Promise<void>;
}

/** What a route may set in its `config`. */
export interface HttpRouteConfig {
  /** Sentences for its schema's refusals, keyed `<context>/<field>` (see validationMessage). */
  validationMessages?: ValidationMessages;
}

/** The longest request target taken: the longest route with its query is under 100 characters. */
export const MAX_URL_LENGTH = 2048;
/** Node's limit on the request line and headers together (its default is 16 KiB). */
export const MAX_HEADER_BYTES = 8192;
export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';
/** The routes open without a token: probes and scrapers carry none, and neither says anything of a guest. */
export const OPEN_ROUTES: readonly string[] = ['/healthz', '/metrics'];
/** The routes take at most a small JSON body; a GET or HEAD none (refused in the hook). */
const BODY_LIMIT = 16 * 1024;
const DEFAULT_HANDLER_TIMEOUT_MS = 10_000;
const DEFAULT_REQUEST_TIMEOUT_MS = 10_000;
/** Every method fastify routes: on a known path, those the route lacks answer 405, not 404. */
const ROUTABLE_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'] as const;

const noQuery = { type: 'object', properties: {}, additionalProperties: false } as const;

interface RouteFlags extends HttpRouteConfig {
  /** One of the server's routes for the methods a path lacks. */
  methodNotAllowed?: boolean;
  allow?: string;
}

const UNAUTHORIZED_MESSAGE =
  "This request wants the API's bearer token: Authorization: Bearer <token>, the token being the content of the service's [api] auth_token_file. Only /healthz and /metrics are open.";

function hasBody(request: FastifyRequest): boolean {
  const length = request.headers['content-length'];
  return request.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

/** `GET /healthz, /metrics, /v1/host; POST /v1/x`: the routes by method, parameters as `{name}`. */
function routeList(routes: ReadonlyMap<string, ReadonlySet<string>>): string {
  const byMethod = new Map<string, string[]>();
  for (const [url, methods] of routes) {
    for (const method of methods) {
      if (method === 'HEAD' && methods.has('GET')) continue;
      byMethod.set(method, [...(byMethod.get(method) ?? []), url.replace(/:([A-Za-z0-9_]+)/g, '{$1}')]);
    }
  }
  return [...byMethod].map(([method, urls]) => `${method} ${urls.join(', ')}`).join('; ');
}

/**
 * Starts the server on `options.listen`:`options.port` with the open routes
 * and `routes`, and resolves once it listens. A failure to listen is a
 * NovaletError API_LISTEN_FAILED naming [api] listen and port and the remedy.
 */
export async function startHttpServer(options: HttpServerOptions, routes: readonly FastifyPluginAsync[]): Promise<HttpServer> {
  checkListenTarget(options);
  const { log } = options;
  const authorized = options.auth.mode === 'none' ? () => true : bearerMatcher(options.auth.token);
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
    // Extra query parameters are refused, not silently dropped; "5" becomes 5 for an integer.
    ajv: { customOptions: { removeAdditional: false, coerceTypes: 'array', useDefaults: true, allErrors: false } },
    frameworkErrors: (error: FastifyError, request: FastifyRequest, reply: FastifyReply) => {
      // Found by the router before any hook: the token is checked here too, so that even these say nothing to a caller without it.
      if (!authorized(request.headers.authorization)) return unauthorized(reply);
      // A path with bad percent-encoding, or a parameter longer than maxParamLength: fastify's own answer would echo the path.
      return sendError(reply, 400, 'BAD_REQUEST', error.code === 'FST_ERR_MAX_PARAM_LENGTH' ? 'A path segment is longer than any this API takes.' : 'The path is not valid percent-encoded UTF-8.');
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

  const unauthorized = (reply: FastifyReply): FastifyReply => {
    void reply.header('www-authenticate', 'Bearer realm="novalet"');
    return sendError(reply, 401, 'UNAUTHORIZED', UNAUTHORIZED_MESSAGE);
  };

  // Every path routed, with its methods: for 405 and for the 404's list. Filled as the plugins register their routes.
  const known = new Map<string, Set<string>>();
  app.addHook('onRoute', (route) => {
    if ((route.config as RouteFlags | undefined)?.methodNotAllowed) return;
    const methods = known.get(route.url) ?? new Set<string>();
    for (const method of Array.isArray(route.method) ? route.method : [route.method]) methods.add(method);
    if (methods.has('GET')) methods.add('HEAD');
    known.set(route.url, methods);
  });

  app.addHook('onRequest', async (request, reply) => {
    if (request.url.length > MAX_URL_LENGTH) {
      return sendError(reply, 414, 'URI_TOO_LONG', `The request target is ${request.url.length} characters long; this API takes at most ${MAX_URL_LENGTH}.`);
    }
    const open = !request.is404 && OPEN_ROUTES.includes(request.routeOptions.url ?? '');
    if (!open && !authorized(request.headers.authorization)) return unauthorized(reply);
    if (request.is404) {
      return sendError(reply, 404, 'NOT_FOUND', `No route ${request.method} ${shownPath(request.url)}: this API has ${routeList(known)}.`);
    }
    const flags = request.routeOptions.config as RouteFlags;
    if (flags.methodNotAllowed) {
      void reply.header('allow', flags.allow);
      return sendError(reply, 405, 'METHOD_NOT_ALLOWED', `${request.method} is not allowed on ${request.routeOptions.url?.replace(/:([A-Za-z0-9_]+)/g, '{$1}')}: it takes ${flags.allow} only.`);
    }
    if ((request.method === 'GET' || request.method === 'HEAD') && hasBody(request)) {
      return sendError(reply, 400, 'BAD_REQUEST', `A ${request.method} request takes no body.`);
    }
    return undefined;
  });

  app.addHook('onSend', async (_request, reply, payload) => {
    // The answers are this moment's state of the service, and JSON or text, never a page to sniff.
    void reply.header('cache-control', 'no-store');
    void reply.header('x-content-type-options', 'nosniff');
    return payload;
  });

  app.addHook('onResponse', async (request, reply) => {
    // The route's pattern, not the raw URL: what was asked is in the route and the status.
    log.debug({ component: 'api', method: request.method, route: request.routeOptions.url ?? null, status: reply.statusCode, ms: Math.round(reply.elapsedTime) }, 'HTTP API request');
  });

  app.setNotFoundHandler((request, reply) => {
    sendError(reply, 404, 'NOT_FOUND', `No route ${request.method} ${shownPath(request.url)}: this API has ${routeList(known)}.`);
  });

  app.setErrorHandler((error: FastifyError, request, reply) => {
    if (error.validation) return sendError(reply, 400, 'BAD_REQUEST', validationMessage(error, (request.routeOptions.config as RouteFlags).validationMessages));
    if (error.code === 'FST_ERR_HANDLER_TIMEOUT') {
      log.warn({ component: 'api', route: request.routeOptions.url ?? null }, 'HTTP API: a route did not answer in time');
      return sendError(reply, 503, 'TIMEOUT', 'novalet did not answer in time; try again.');
    }
    const status = error.statusCode ?? 500;
    if (status >= 400 && status < 500) return sendError(reply, status, 'BAD_REQUEST', 'The request is not one this API takes.');
    log.error({ component: 'api', route: request.routeOptions.url ?? null, err: error }, 'HTTP API: a request failed inside novalet');
    return sendError(reply, 500, 'INTERNAL', "The request failed inside novalet; the service's log has the details.");
  });

  app.get('/healthz', { schema: { querystring: noQuery } }, async (_request, reply) => {
    let state: HealthState;
    try {
      state = await options.health();
    } catch (error) {
      log.error({ component: 'api', err: error }, 'HTTP API: the health check failed');
      state = { status: 'unavailable', reasons: ["the health check itself failed; the service's log has the details"] };
    }
    return reply
      .code(state.status === 'ok' || state.status === 'degraded' ? 200 : 503)
      .type(JSON_TYPE)
      .send({ status: state.status, reasons: state.reasons });
  });

  app.get('/metrics', { schema: { querystring: noQuery } }, async (_request, reply) => reply.type(METRICS_CONTENT_TYPE).send(await options.metrics()));

  // Loaded now (await), so that every route is known before the 405 routes are added.
  for (const plugin of routes) await app.register(plugin);
  for (const [url, methods] of known) {
    const missing = ROUTABLE_METHODS.filter((method) => !methods.has(method));
    if (missing.length === 0) continue;
    const allow = ROUTABLE_METHODS.filter((method) => methods.has(method)).join(', ');
    app.route({ method: missing, url, config: { methodNotAllowed: true, allow } satisfies RouteFlags, handler: async () => undefined });
  }

  try {
    await app.listen({ host: options.listen, port: options.port });
  } catch (error) {
    await app.close().catch(() => undefined);
    throw listenError(error as NodeJS.ErrnoException, options);
  }
  const info = (app.server as Server).address();
  const address = info !== null && typeof info === 'object' ? { host: info.address, port: info.port } : { host: options.listen, port: options.port };
  log.info({ component: 'api', host: address.host, port: address.port, auth: options.auth.mode }, 'HTTP API listening');

  let closing: Promise<void> | null = null;
  return {
    address,
    close: () => (closing ??= app.close().then(() => log.info({ component: 'api' }, 'HTTP API closed'))),
  };
}
