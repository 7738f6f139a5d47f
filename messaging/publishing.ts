import type { Options } from 'amqplib';
import type { Logger } from '../config/logger.js';
import type { BrokerOptions } from './broker-options.js';
import { publishFailed, unroutable } from './broker-errors.js';
import { ConfirmedChannel } from './confirm-channel.js';
import type { Connection, Session } from './connection.js';
import { describeAddress } from './transport-url.js';

/**
 * Publishing with publisher confirms: one confirm channel per connection,
 * opened when first needed and again after the broker closes it; a publish
 * waits for a connection and for its confirm, at most rpc_response_timeout;
 * one whose channel or connection went before the confirm is published
 * again on the next (at least once, as oslo does).
 */

export interface PublishOptions {
  correlationId?: string;
  replyTo?: string;
  messageId?: string;
  headers?: Record<string, unknown>;
  /** Default true (delivery_mode 2). */
  persistent?: boolean;
  expiration?: string;
  /** Default application/json. */
  contentType?: string;
  /**
   * Must reach a queue: a message no queue is bound for comes back from the
   * broker (basic.return) and the publish rejects with MESSAGE_UNROUTABLE.
   * A message id is set when none is given (returns are matched by it).
   */
  mandatory?: boolean;
}

interface ChannelSlot {
  channel: ConfirmedChannel | null;
  opening: Promise<ConfirmedChannel> | null;
}

export class Publishing {
  private readonly slots = new WeakMap<Session, ChannelSlot>();
  private readonly inFlight = new Set<Promise<unknown>>();

  constructor(
    private readonly connection: Connection,
    private readonly options: BrokerOptions,
    private readonly log: Logger,
    private readonly scrub: (error: unknown) => string,
  ) {}

  /** Publishes and resolves once the broker confirmed; see Broker.publish. */
  publish(exchange: string, routingKey: string, content: Buffer, options: PublishOptions = {}): Promise<void> {
    return this.track(this.publishUntil(Date.now() + this.options.rpcTimeoutSeconds * 1000, exchange, routingKey, content, options));
  }

  /** Resolves once every publish in flight is settled, at most after `ms`. */
  async drain(ms: number): Promise<void> {
    const all = Promise.allSettled([...this.inFlight]);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([all, new Promise((resolve) => (timer = setTimeout(resolve, ms)))]);
    clearTimeout(timer);
  }

  /** As publish, with the caller's deadline (ms since the epoch): a call's request shares the call's. */
  async publishUntil(deadline: number, exchange: string, routingKey: string, content: Buffer, options: PublishOptions): Promise<void> {
    const properties: Options.Publish = {
      contentType: options.contentType ?? 'application/json',
      persistent: options.persistent ?? true,
      ...(options.correlationId !== undefined && { correlationId: options.correlationId }),
      ...(options.replyTo !== undefined && { replyTo: options.replyTo }),
      ...(options.messageId !== undefined && { messageId: options.messageId }),
      ...(options.headers !== undefined && { headers: options.headers }),
      ...(options.expiration !== undefined && { expiration: options.expiration }),
      ...(options.mandatory && { mandatory: true }),
    };
    const target = `to exchange '${exchange}' with routing key '${routingKey}'`;
    for (;;) {
      if (this.connection.stopped) throw publishFailed(`The message ${target} was not published: the broker connection was stopped.`);
      let session: Session;
      try {
        session = await this.connection.waitSession(deadline);
      } catch {
        if (this.connection.stopped) throw publishFailed(`The message ${target} was not published: the broker connection was stopped.`);
        throw publishFailed(`The message ${target} was not confirmed within ${this.options.rpcTimeoutSeconds} seconds ([DEFAULT] rpc_response_timeout): no broker was reachable.`);
      }
      let channel: ConfirmedChannel;
      try {
        channel = await this.channelFor(session);
      } catch {
        // The connection is going; wait for the next one.
        await this.connection.sleep(Math.min(1000, Math.max(0, deadline - Date.now())));
        continue;
      }
      const outcome = await channel.send(exchange, routingKey, content, properties, deadline);
      switch (outcome.kind) {
        case 'ack':
          return;
        case 'returned':
          throw unroutable(exchange, routingKey, outcome.replyText);
        case 'nack':
          throw publishFailed(`The broker refused (nacked) the message ${target}.`);
        case 'timeout':
          throw publishFailed(`The message ${target} was not confirmed within ${this.options.rpcTimeoutSeconds} seconds ([DEFAULT] rpc_response_timeout).`);
        case 'closed':
          if (outcome.error && (outcome.error.code === 404 || outcome.error.code === 403) && outcome.error.message.includes(`'${exchange}'`)) {
            throw publishFailed(`The broker refused the message ${target}: ${this.scrub(outcome.error)}.`);
          }
        // The channel or connection went before the confirm: published again
        // on the next one (at least once, as oslo does).
      }
    }
  }

  private channelFor(session: Session): Promise<ConfirmedChannel> {
    let slot = this.slots.get(session);
    if (!slot) {
      slot = { channel: null, opening: null };
      this.slots.set(session, slot);
    }
    if (slot.channel?.open) return Promise.resolve(slot.channel);
    const opening = (slot.opening ??= (async () => {
      const channel = new ConfirmedChannel(await session.model.createConfirmChannel(), (error) => {
        this.log.warn(
          { broker: describeAddress(session.address) },
          `[${this.connection.id}] The broker closed the publishing channel: ${this.scrub(error)}. A new channel is opened.`,
        );
      });
      slot.channel = channel;
      return channel;
    })().finally(() => {
      slot.opening = null;
    }));
    return opening;
  }

  private track<T>(promise: Promise<T>): Promise<T> {
    this.inFlight.add(promise);
    const untrack = (): void => {
      this.inFlight.delete(promise);
    };
    promise.then(untrack, untrack);
    return promise;
  }
}
