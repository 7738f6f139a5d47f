import { EventEmitter } from 'node:events';
import type { Logger } from '../config/logger.js';
import type { BrokerOptions } from './broker-options.js';
import { stoppedError } from './broker-errors.js';
import { STOP_WAIT_MS } from './bounded-wait.js';
import { Calls, type CallOptions, type Reply } from './calls.js';
import { Connection, type BrokerState } from './connection.js';
import { Consuming } from './consuming.js';
import type { DeadLetterCode } from './contracts/dead-letter.js';
import { DeadLetterLog } from './dead-letter-log.js';
import { DeadLetterWriter, type DeadLetterMessage } from './dead-letter-writer.js';
import type { ConsumerHandle, DeliveryHandler } from './delivery.js';
import { credentialScrubber } from './error-words.js';
import { Publishing, type PublishOptions } from './publishing.js';
import type { TopologySpec } from './topology.js';

/**
 * novalet's connection to RabbitMQ: the one class services use, a facade
 * over its roles — the connection and its reconnection
 * (messaging/connection.ts), publishing with confirms (publishing.ts),
 * consuming with acks (consuming.ts), calls (calls.ts) — and the one writer
 * of `novalet.dead` (dead-letter-writer.ts). Error text in its log lines
 * never carries a configured password.
 */

export type { BrokerState } from './connection.js';
export type { ConsumerHandle, Delivery, DeliveryHandler, DeliveryProperties } from './delivery.js';
export type { PublishOptions } from './publishing.js';
export type { CallOptions, Reply } from './calls.js';
export type { DeadLetterMessage } from './dead-letter-writer.js';
export { REPLY_QUEUE_PREFIX } from './calls.js';
export { DEAD_EXCHANGE_HEADER, DEAD_QUEUE_HEADER, DEAD_REASON_HEADER, DEAD_ROUTING_KEY_HEADER } from './dead-letter-writer.js';

type BrokerEvent = 'connected' | 'disconnected' | 'dead-lettered';

export class Broker extends EventEmitter {
  private readonly connection: Connection;
  private readonly publishing: Publishing;
  private readonly consuming: Consuming;
  private readonly calls: Calls;
  private readonly deadLetterLog: DeadLetterLog;
  private readonly deadLetters: DeadLetterWriter;
  private readonly log: Logger;
  private readonly scrub: (error: unknown) => string;
  private stopping: Promise<void> | null = null;

  constructor(options: BrokerOptions, log: Logger, topology: TopologySpec) {
    super();
    if (options.addresses.length === 0) throw new RangeError('BrokerOptions.addresses is empty');
    this.log = log;
    this.scrub = credentialScrubber(options.addresses.map((a) => a.password));
    this.connection = new Connection(options, log, topology, this.scrub, {
      resume: (session) => this.consuming.resumeAll(session),
      connected: (reconnect) => this.emitSafely('connected', { reconnect }),
      disconnected: (reason) => this.emitSafely('disconnected', reason),
    });
    this.publishing = new Publishing(this.connection, options, log, this.scrub);
    this.deadLetterLog = new DeadLetterLog(log);
    this.deadLetters = new DeadLetterWriter(
      (exchange, key, content, publishOptions) => this.publishing.publish(exchange, key, content, publishOptions),
      this.deadLetterLog,
      (code) => this.emitSafely('dead-lettered', code),
    );
    this.consuming = new Consuming(this.connection, options, log, this.scrub, this.deadLetters);
    this.calls = new Calls(this.connection, this.publishing, options, log, this.scrub);
  }

  get state(): BrokerState {
    return this.connection.state;
  }

  /** Successful reconnections after the first connection. */
  get reconnects(): number {
    return this.connection.reconnects;
  }

  /** host:port of the broker connected to, null while not connected. */
  get address(): string | null {
    return this.connection.address;
  }

  /** 'connected' ({ reconnect }), 'disconnected' (the error), 'dead-lettered' (the DeadLetterCode of each message this Broker moved to novalet.dead). */
  override on(event: BrokerEvent, listener: (arg: any) => void): this {
    return super.on(event, listener);
  }

  /** Connects (trying addresses in turn, forever, with backoff) and declares the topology; resolves once connected the first time. Rejects with the abort reason if `signal` aborts first (and the Broker is stopped then). */
  start(signal?: AbortSignal): Promise<void> {
    if (this.connection.stopped) return Promise.reject(stoppedError('start'));
    const first = this.connection.start();
    if (!signal) return first;
    if (signal.aborted) {
      void this.stop();
      return Promise.reject(signal.reason);
    }
    return new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        void this.stop();
        reject(signal.reason);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      first.then(
        () => {
          signal.removeEventListener('abort', onAbort);
          resolve();
        },
        (error: unknown) => {
          signal.removeEventListener('abort', onAbort);
          reject(error);
        },
      );
    });
  }

  /**
   * Publishes with publisher confirms (content_type application/json unless
   * told otherwise, persistent unless told otherwise); while disconnected
   * waits for the reconnection; resolves once the broker confirmed; rejects
   * with BROKER_PUBLISH_FAILED (nack, refused, not confirmed within
   * rpcTimeoutSeconds, stopped). Unroutable is fine unless `mandatory`: then
   * a message the broker returns rejects with MESSAGE_UNROUTABLE.
   */
  publish(exchange: string, routingKey: string, content: Buffer, options: PublishOptions = {}): Promise<void> {
    return this.publishing.publish(exchange, routingKey, content, options);
  }

  /** Manual acks, prefetch per consumer (basic.qos on its own channel; 0 = no limit); resolves once subscribed; resumed after every reconnect and channel loss. A delivery whose handler throws before settling it is moved to novalet.dead (HANDLER_FAILED); one larger than maxMessageBytes goes there unread (MESSAGE_TOO_LARGE). Rejects with BROKER_CONSUME_FAILED when the broker refuses the first subscription (no such queue). */
  consume(queue: string, handler: DeliveryHandler, options: { prefetch: number }): Promise<ConsumerHandle> {
    return this.consuming.consume(queue, handler, options);
  }

  /** RPC: publishes with reply_to (an exclusive auto-delete reply queue of this connection) and a fresh correlation_id; resolves with the reply; rejects RPC_TIMEOUT after options.timeoutMs (default rpcTimeoutSeconds), BROKER_PUBLISH_FAILED if the request was not confirmed, BROKER_STOPPED if stopped first, the abort reason if `signal` aborts. A reconnection loses the replies of calls in flight (they time out), as with oslo's. */
  call(exchange: string, routingKey: string, content: Buffer, options: CallOptions = {}): Promise<Reply> {
    return this.calls.call(exchange, routingKey, content, options);
  }

  /**
   * The one way to novalet.dead: `message` (a Delivery will do) as it came,
   * with the contract's headers for `code` and `reason` and this layer's
   * (`source.queue`: where it was consumed from); resolves once confirmed,
   * rejects as publish does (the caller still holds the message then). Its
   * log lines are rate-limited: the first of a minute whole, then one
   * summary with the count by code. Emits 'dead-lettered' (the code).
   */
  deadLetter(message: DeadLetterMessage, code: DeadLetterCode, reason: string, source?: { queue?: string }): Promise<void> {
    return this.deadLetters.write(message, code, reason, source);
  }

  /** Cancels consumers, waits for pending confirms (bounded), closes; no reconnect afterwards. Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= this.shutdown();
    return this.stopping;
  }

  private async shutdown(): Promise<void> {
    this.connection.beginStop();
    await this.consuming.cancelAll();
    await this.publishing.drain(STOP_WAIT_MS);
    this.calls.rejectAll();
    // The count of the last period is told now rather than lost.
    this.deadLetterLog.flush();
    await this.connection.close();
  }

  private emitSafely(event: BrokerEvent, arg: unknown): void {
    for (const listener of this.listeners(event)) {
      try {
        (listener as (arg: unknown) => void)(arg);
      } catch (error) {
        this.log.error({}, `A '${event}' listener of the broker connection failed: ${this.scrub(error)}`);
      }
    }
  }
}
