import { randomUUID } from 'node:crypto';
import type { ConsumeMessage } from 'amqplib';
import type { Logger } from '../config/logger.js';
import { NovaletError } from '../config/novalet-error.js';
import type { BrokerOptions } from './broker-options.js';
import { stoppedError } from './broker-errors.js';
import type { Connection, Session } from './connection.js';
import { propertiesOf, type DeliveryProperties } from './delivery.js';
import type { Publishing } from './publishing.js';
import { describeAddress } from './transport-url.js';

/**
 * Calls (RPC) as oslo.messaging makes them: the request carries reply_to,
 * an exclusive auto-delete reply queue of the connection, and a fresh
 * correlation_id; the answer comes to that queue and is matched by it. A
 * reconnection loses the replies of calls in flight (they time out), as
 * with oslo's.
 */

/** RabbitMQ's reply queues of this process are named so (exclusive, auto-delete). */
export const REPLY_QUEUE_PREFIX = 'novalet.reply.';

export interface Reply {
  content: Buffer;
  properties: DeliveryProperties;
}

export interface CallOptions {
  timeoutMs?: number;
  messageId?: string;
  signal?: AbortSignal;
}

interface PendingCall {
  resolve(reply: Reply): void;
  reject(error: unknown): void;
}

export class Calls {
  private readonly pending = new Map<string, PendingCall>();
  private readonly replyQueues = new WeakMap<Session, Promise<string>>();

  constructor(
    private readonly connection: Connection,
    private readonly publishing: Publishing,
    private readonly options: BrokerOptions,
    private readonly log: Logger,
    private readonly scrub: (error: unknown) => string,
  ) {}

  /** See Broker.call. */
  call(exchange: string, routingKey: string, content: Buffer, options: CallOptions = {}): Promise<Reply> {
    if (this.connection.stopped) return Promise.reject(stoppedError(`call '${routingKey}'`));
    const { signal } = options;
    if (signal?.aborted) return Promise.reject(signal.reason);
    const timeoutMs = options.timeoutMs ?? this.options.rpcTimeoutSeconds * 1000;
    const deadline = Date.now() + timeoutMs;
    const correlationId = randomUUID();
    return new Promise((resolve, reject) => {
      const finish = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        this.pending.delete(correlationId);
      };
      const pending: PendingCall = {
        resolve: (reply) => {
          finish();
          resolve(reply);
        },
        reject: (error) => {
          finish();
          reject(error);
        },
      };
      const timer = setTimeout(
        () =>
          pending.reject(
            new NovaletError(
              'RPC_TIMEOUT',
              `No reply to the call to exchange '${exchange}' with routing key '${routingKey}' came within ${timeoutMs / 1000} seconds.`,
              'Check that the service consuming that key runs, or raise [DEFAULT] rpc_response_timeout.',
            ),
          ),
        timeoutMs,
      );
      const onAbort = (): void => pending.reject(signal!.reason);
      signal?.addEventListener('abort', onAbort, { once: true });
      this.pending.set(correlationId, pending);
      void (async () => {
        const replyTo = await this.replyQueueUntil(deadline);
        await this.publishing.publishUntil(deadline, exchange, routingKey, content, {
          correlationId,
          replyTo,
          ...(options.messageId !== undefined && { messageId: options.messageId }),
        });
      })().catch((error: unknown) => {
        // Past the deadline the timer's RPC_TIMEOUT says it better.
        if (Date.now() < deadline) pending.reject(this.connection.stopped ? stoppedError(`call '${routingKey}'`) : error);
      });
    });
  }

  /** Every call still waiting rejects with BROKER_STOPPED. */
  rejectAll(): void {
    for (const pending of this.pending.values()) pending.reject(stoppedError('wait for a reply'));
  }

  private async replyQueueUntil(deadline: number): Promise<string> {
    for (;;) {
      const session = await this.connection.waitSession(deadline);
      try {
        return await this.replyQueueFor(session);
      } catch (error) {
        if (session.open && !this.connection.stopped) {
          this.log.warn({ broker: describeAddress(session.address) }, `[${this.connection.id}] The reply queue could not be declared: ${this.scrub(error)}.`);
        }
        await this.connection.sleep(Math.min(1000, Math.max(0, deadline - Date.now())));
      }
    }
  }

  private replyQueueFor(session: Session): Promise<string> {
    const existing = this.replyQueues.get(session);
    if (existing) return existing;
    const opening = (async () => {
      const channel = await session.model.createChannel();
      channel.on('error', () => undefined);
      channel.on('close', () => {
        if (this.replyQueues.get(session) === opening) this.replyQueues.delete(session);
      });
      const name = REPLY_QUEUE_PREFIX + randomUUID();
      await channel.assertQueue(name, { exclusive: true, autoDelete: true, durable: false });
      await channel.consume(name, (message) => message && this.reply(message), { noAck: true });
      return name;
    })();
    this.replyQueues.set(session, opening);
    opening.catch(() => {
      if (this.replyQueues.get(session) === opening) this.replyQueues.delete(session);
    });
    return opening;
  }

  private reply(message: ConsumeMessage): void {
    const id = message.properties.correlationId as string | undefined;
    const pending = id === undefined ? undefined : this.pending.get(id);
    if (!pending) {
      this.log.debug({}, `[${this.connection.id}] A reply for no call in flight (correlation_id ${String(id)}) is dropped.`);
      return;
    }
    const limit = this.options.maxMessageBytes;
    if (message.content.length > limit) {
      pending.reject(
        new NovaletError(
          'RPC_REPLY_TOO_LARGE',
          `The reply to a call is ${message.content.length} bytes, more than [oslo_messaging_rabbit] max_message_size (${limit}).`,
          'Raise max_message_size, or have the service answer with less.',
        ),
      );
      return;
    }
    pending.resolve({ content: message.content, properties: propertiesOf(message) });
  }
}
