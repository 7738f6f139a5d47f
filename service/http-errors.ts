/**
 * The one error shape of every novalet HTTP API: JSON `{"code", "message"}`,
 * a sentence with no stack, raw input shown only as a short escaped excerpt
 * (config/quote-for-message.ts). Used by the server (service/http-server.ts)
 * and by the routes each service adds to it.
 */
import type { FastifyError, FastifyReply } from 'fastify';
import type { ErrorCode } from '../config/error-codes.js';
import { NovaletError } from '../config/novalet-error.js';
import { quotePrefix, quoteForMessage } from '../config/quote-for-message.js';

/**
 * The codes of errors only the HTTP APIs answer with. They are not
 * NovaletErrors (nothing raises them; they exist only on the wire), so they
 * live here and not in config/error-codes.ts. Routes answer with codes of
 * the catalogue too (INSTANCE_NOT_FOUND for an unknown UUID, INTERNAL for a
 * failure inside novalet).
 */
export type HttpErrorCode =
  | 'BAD_REQUEST' // a parameter, query or body the route does not take
  | 'UNAUTHORIZED' // no bearer token, or not the right one
  | 'NOT_FOUND' // no such route
  | 'METHOD_NOT_ALLOWED' // the route exists, but not for this method
  | 'URI_TOO_LONG' // the request target is longer than MAX_URL_LENGTH
  | 'HEADERS_TOO_LARGE' // the request line and headers exceed MAX_HEADER_BYTES
  | 'REQUEST_TIMEOUT' // the client did not send its request in time
  | 'TIMEOUT'; // the route did not answer within handlerTimeoutMs
export type ApiErrorCode = HttpErrorCode | ErrorCode;

export interface ApiError {
  code: ApiErrorCode;
  message: string;
}

export const JSON_TYPE = 'application/json; charset=utf-8';

/** Answers `status` with the error shape. */
export function sendError(reply: FastifyReply, status: number, code: ApiErrorCode, message: string): FastifyReply {
  const body: ApiError = { code, message };
  return reply.code(status).type(JSON_TYPE).send(body);
}

/** The path of a request without its query, shortened and escaped: how an error names what was asked. */
export function shownPath(url: string): string {
  return quotePrefix(url.split('?', 1)[0] ?? '', 80);
}

/** The raw HTTP response for errors Node's parser finds before fastify sees a request. */
export function rawErrorResponse(status: 400 | 408 | 431, code: ApiErrorCode, message: string): string {
  const body = JSON.stringify({ code, message } satisfies ApiError);
  const reason = { 400: 'Bad Request', 408: 'Request Timeout', 431: 'Request Header Fields Too Large' }[status];
  return `HTTP/1.1 ${status} ${reason}\r\nContent-Type: ${JSON_TYPE}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`;
}

/**
 * What a route says when its schema refuses a request: keyed
 * `<context>/<field>` (`params/uuid`, `querystring/lines`), set in the
 * route's `config.validationMessages`. A refusal without one gets a
 * sentence of its own that never quotes the raw value.
 */
export type ValidationMessages = Readonly<Record<string, string>>;

export function validationMessage(error: FastifyError, messages: ValidationMessages = {}): string {
  const first = error.validation?.[0];
  const context = error.validationContext ?? 'request';
  const field = first?.instancePath.replace(/^\//, '') ?? '';
  const own = messages[`${context}/${field}`];
  if (own !== undefined) return own;
  if (first?.keyword === 'additionalProperties') {
    const name = String((first.params as { additionalProperty?: unknown }).additionalProperty ?? '');
    return `The ${context === 'querystring' ? 'query parameter' : context} ${quotePrefix(name, 40)} is not one this route takes.`;
  }
  return `The request's ${context === 'querystring' ? 'query' : context} is not one this route takes.`;
}

/** Where the server was asked to listen, as an error names it. */
export interface ListenTarget {
  listen: string;
  port: number;
}

/** A failure to listen as a NovaletError API_LISTEN_FAILED naming [api] listen and port and the remedy. */
export function listenError(error: NodeJS.ErrnoException, target: ListenTarget): NovaletError {
  const where = `${quoteForMessage(target.listen)} port ${target.port} ([api] listen, [api] port)`;
  switch (error.code) {
    case 'EADDRINUSE':
      return new NovaletError(
        'API_LISTEN_FAILED',
        `The HTTP API cannot listen on ${where}: another process holds that port.`,
        `Stop the process that holds it (ss -ltnp 'sport = :${target.port}' names it) or set [api] port to a free port.`,
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

/** The listen target checked before anything starts. */
export function checkListenTarget(target: ListenTarget): void {
  if (!Number.isInteger(target.port) || target.port < 0 || target.port > 65535) {
    throw new NovaletError(
      'API_LISTEN_FAILED',
      `The HTTP API cannot listen on port ${quotePrefix(String(target.port), 20)} ([api] port): a port is an integer from 1 to 65535.`,
      'Set [api] port to a free port from 1 to 65535.',
    );
  }
  if (typeof target.listen !== 'string' || target.listen.trim() === '') {
    throw new NovaletError('API_LISTEN_FAILED', 'The HTTP API cannot listen: [api] listen is empty.', 'Set [api] listen to an IP address of this host, such as 127.0.0.1.');
  }
}
