/**
 * The compute service's routes on the service's HTTP server
 * (service/http-server.ts, which adds /healthz and /metrics, the token
 * check, the limits and the error shape): read-only views of this host for
 * operators — the host's KVM verdict and capabilities, the instances and
 * their consoles. Every route is GET, checked by fastify's JSON schemas.
 */
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { sendError } from '../service/http-errors.js';
import type { HttpRouteConfig } from '../service/http-server.js';
import type { InstanceView } from './instance-view.js';

export type { InstanceView };

export interface ComputeApiSource {
  /** probe, verdict and capabilities: any JSON object. */
  host(): Promise<Record<string, unknown>>;
  instances(): Promise<InstanceView[]>;
  instance(uuid: string): Promise<InstanceView | null>;
  /** null: no such instance. */
  console(uuid: string, lines: number): Promise<string[] | null>;
}

export const CONSOLE_LINES = { min: 1, max: 10_000, default: 100 } as const;

const UUID_PATTERN = '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$';
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

/** What a refused UUID or lines= says: never the raw value. */
const config: HttpRouteConfig = {
  validationMessages: {
    'params/uuid': 'The instance UUID in the path must be a UUID: 32 hexadecimal digits in groups of 8-4-4-4-12, such as 123e4567-e89b-12d3-a456-426614174000.',
    'querystring/lines': `The query parameter lines must be an integer from ${CONSOLE_LINES.min} to ${CONSOLE_LINES.max} (default ${CONSOLE_LINES.default}).`,
  },
};

const uuidOf = (request: FastifyRequest): string => (request.params as { uuid: string }).uuid.toLowerCase();
const notFound = (reply: FastifyReply, uuid: string): FastifyReply => sendError(reply, 404, 'INSTANCE_NOT_FOUND', `No instance ${uuid} is on this host.`);

/** `/v1/host`, `/v1/instances`, `/v1/instances/{uuid}`, `/v1/instances/{uuid}/console?lines=N`. */
export function computeRoutes(source: ComputeApiSource): FastifyPluginAsync {
  return async (app) => {
    app.get('/v1/host', { schema: { querystring: noQuery }, config }, async () => source.host());

    app.get('/v1/instances', { schema: { querystring: noQuery }, config }, async () => ({ instances: await source.instances() }));

    app.get('/v1/instances/:uuid', { schema: { params: uuidParams, querystring: noQuery }, config }, async (request, reply) => {
      const uuid = uuidOf(request);
      const instance = await source.instance(uuid);
      return instance === null ? notFound(reply, uuid) : instance;
    });

    app.get('/v1/instances/:uuid/console', { schema: { params: uuidParams, querystring: consoleQuery }, config }, async (request, reply) => {
      const uuid = uuidOf(request);
      const { lines } = request.query as { lines: number };
      const text = await source.console(uuid, lines);
      if (text === null) return notFound(reply, uuid);
      return reply.type('text/plain; charset=utf-8').send(text.length === 0 ? '' : `${text.join('\n')}\n`);
    });
  };
}
