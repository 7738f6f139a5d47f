import type { Channel } from 'amqplib';
import { NovaletError } from '../config/novalet-error.js';
import { quoteForMessage } from '../config/quote-for-message.js';

/**
 * The broker objects of the wire contract, declared idempotently at start
 * and after every reconnect (messaging/connection.ts). Requests go to the
 * topic exchange `novalet` (key `scheduler`, `compute.<host>`); reports and
 * instance events to the topic exchange `novalet.events`; what cannot be
 * handled to the fanout exchange and queue `novalet.dead`, bounded in
 * length. Every process declares what it uses (WIRE.md): a compute host
 * that publishes reschedules declares `novalet.scheduler` too.
 */
export const REQUEST_EXCHANGE = 'novalet';
export const EVENT_EXCHANGE = 'novalet.events';
export const DEAD_LETTER = 'novalet.dead';
export const SCHEDULER_QUEUE = 'novalet.scheduler';
export const SCHEDULER_KEY = 'scheduler';

/** What a service consumes: its compute queue, the scheduler's queue, or both. */
export interface TopologySpec {
  computeHost?: string;
  scheduler?: boolean;
}

// Queue names are at most 255 bytes; the longest prefix is 'novalet.compute.'.
const MAX_NAME_BYTES = 200;

/**
 * A host name or UUID becomes one part of a routing key: a topic binding
 * reads '*' and '#' as wildcards (compute.* would take every host's
 * requests), so they are refused, as are whitespace and control characters.
 */
function checkedPart(what: string, value: string, remedy: string): string {
  const bad =
    value === '' ? 'it is empty'
    : Buffer.byteLength(value) > MAX_NAME_BYTES ? `it is longer than ${MAX_NAME_BYTES} bytes`
    : /[*#]/.test(value) ? "it holds '*' or '#', which a topic binding reads as wildcards"
    : /[\s\p{Cc}]/u.test(value) ? 'it holds whitespace or control characters'
    : null;
  if (bad) throw new NovaletError('AMQP_NAME_INVALID', `The ${what} ${quoteForMessage(value)} cannot be part of an AMQP queue name or routing key: ${bad}.`, remedy);
  return value;
}

const HOST_REMEDY = "Set [DEFAULT] host to this host's name, FQDN or IP address.";

export function computeQueue(host: string): string {
  return `novalet.compute.${checkedPart('host name', host, HOST_REMEDY)}`;
}

export function computeKey(host: string): string {
  return `compute.${checkedPart('host name', host, HOST_REMEDY)}`;
}

export function reportKey(host: string): string {
  return `host.${checkedPart('host name', host, HOST_REMEDY)}.report`;
}

export function instanceEventKey(uuid: string, event: string): string {
  const remedy = 'This is a bug of novalet: instance UUIDs and event names are its own.';
  return `instance.${checkedPart('instance UUID', uuid, remedy)}.${checkedPart('event name', event, remedy)}`;
}

/** Durable queue arguments: quorum queues with `rabbit_quorum_queue = true`, as oslo.messaging declares them. */
export function queueArguments(quorum: boolean): Record<string, unknown> {
  return quorum ? { 'x-queue-type': 'quorum' } : {};
}

/** How the durable queues are declared: `[oslo_messaging_rabbit] rabbit_quorum_queue` and `dead_letter_max_length`. */
export interface TopologyOptions {
  quorum: boolean;
  deadLetterMaxLength: number;
}

/** The arguments `novalet.dead` is declared with: bounded, RabbitMQ dropping the oldest past the bound (drop-head, the default overflow of classic and quorum queues). */
export function deadLetterQueueArguments(options: TopologyOptions): Record<string, unknown> {
  return { ...queueArguments(options.quorum), 'x-max-length': options.deadLetterMaxLength };
}

export interface DeclaredTopology {
  /**
   * The broker's words when `novalet.dead` already exists with other
   * arguments (another bound, another type, none from before the bound):
   * it is used as it is, null when declared as asked.
   */
  deadLetterMismatch: string | null;
}

/**
 * Declares the exchanges, the dead-letter queue and the queues `spec` asks
 * for, with their bindings, on channels of its own (`open`), closed before
 * it returns. Every declaration is idempotent: the same arguments from
 * every process. One that clashes with what exists (a queue of the other
 * type after rabbit_quorum_queue changed) fails with the broker's
 * PRECONDITION_FAILED; but for `novalet.dead`, whose arguments only bound
 * it: a clash there is reported (`deadLetterMismatch`) and the existing
 * queue is used, so that a bound never stops a service.
 */
export async function declareTopology(open: () => Promise<Channel>, spec: TopologySpec, options: TopologyOptions): Promise<DeclaredTopology> {
  const queueOptions = { durable: true, arguments: queueArguments(options.quorum) };
  const opened: Channel[] = [];
  const fresh = async (): Promise<Channel> => {
    const channel = await open();
    // A refused declaration rejects with the error; the channel's event would be unhandled.
    channel.on('error', () => undefined);
    opened.push(channel);
    return channel;
  };
  try {
    let channel = await fresh();
    await channel.assertExchange(REQUEST_EXCHANGE, 'topic', { durable: true });
    await channel.assertExchange(EVENT_EXCHANGE, 'topic', { durable: true });
    await channel.assertExchange(DEAD_LETTER, 'fanout', { durable: true });
    let deadLetterMismatch: string | null = null;
    try {
      await channel.assertQueue(DEAD_LETTER, { durable: true, arguments: deadLetterQueueArguments(options) });
    } catch (error) {
      if ((error as { code?: unknown }).code !== PRECONDITION_FAILED) throw error;
      deadLetterMismatch = error instanceof Error ? error.message : String(error);
      // The refusal closed the channel; a passive declare only asks that it exists.
      channel = await fresh();
      await channel.checkQueue(DEAD_LETTER);
    }
    await channel.bindQueue(DEAD_LETTER, DEAD_LETTER, '');
    if (spec.scheduler) {
      await channel.assertQueue(SCHEDULER_QUEUE, queueOptions);
      await channel.bindQueue(SCHEDULER_QUEUE, REQUEST_EXCHANGE, SCHEDULER_KEY);
    }
    if (spec.computeHost !== undefined) {
      const queue = computeQueue(spec.computeHost);
      await channel.assertQueue(queue, queueOptions);
      await channel.bindQueue(queue, REQUEST_EXCHANGE, computeKey(spec.computeHost));
    }
    return { deadLetterMismatch };
  } finally {
    await Promise.all(opened.map((channel) => channel.close().catch(() => undefined)));
  }
}

/** AMQP's reply code for a declaration that does not match what exists. */
const PRECONDITION_FAILED = 406;
