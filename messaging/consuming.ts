import type { Channel, ConsumeMessage } from 'amqplib';
import type { Logger } from '../config/logger.js';
import { NovaletError } from '../config/novalet-error.js';
import type { BrokerOptions } from './broker-options.js';
import { stoppedError } from './broker-errors.js';
import { STOP_WAIT_MS, withTimeout } from './bounded-wait.js';
import { TopologyError, type Connection, type Session } from './connection.js';
import type { DeadLetterCode } from './contracts/dead-letter.js';
import type { DeadLetterWriter } from './dead-letter-writer.js';
import { propertiesOf, type ConsumerHandle, type Delivery, type DeliveryHandler } from './delivery.js';
import { DEAD_LETTER } from './topology.js';
import { describeAddress } from './transport-url.js';

/**
 * Consuming with manual acks: each consumer on a channel of its own with its
 * own prefetch (basic.qos); resumed on every new connection (the
 * connection's `resume` hook) and, when only its channel went (a channel
 * error, its queue deleted), on a new channel after the topology is
 * declared again, with oslo's waits. A delivery larger than
 * max_message_size goes to novalet.dead unread; one whose handler threw
 * without settling it goes there too (messaging/dead-letter-writer.ts).
 */

interface ChannelState {
  open: boolean;
}

interface Consumer {
  queue: string;
  handler: DeliveryHandler;
  prefetch: number;
  /** Registered: resumed after reconnects and channel errors. */
  active: boolean;
  cancelled: boolean;
  channel: Channel | null;
  channelState: ChannelState | null;
  tag: string | null;
  unsettled: number;
  recoveryTimer: NodeJS.Timeout | null;
  recoverySession: Session | null;
  recoveryFailures: number;
}

export class Consuming {
  private readonly consumers = new Set<Consumer>();

  constructor(
    private readonly connection: Connection,
    private readonly options: BrokerOptions,
    private readonly log: Logger,
    private readonly scrub: (error: unknown) => string,
    private readonly deadLetters: DeadLetterWriter,
  ) {}

  /** See Broker.consume. */
  async consume(queue: string, handler: DeliveryHandler, options: { prefetch: number }): Promise<ConsumerHandle> {
    const consumer: Consumer = {
      queue,
      handler,
      prefetch: options.prefetch,
      active: false,
      cancelled: false,
      channel: null,
      channelState: null,
      tag: null,
      unsettled: 0,
      recoveryTimer: null,
      recoverySession: null,
      recoveryFailures: 0,
    };
    for (;;) {
      if (this.connection.stopped) throw stoppedError(`consume from queue '${queue}'`);
      let session: Session;
      try {
        session = await this.connection.waitSession();
      } catch {
        throw stoppedError(`consume from queue '${queue}'`);
      }
      try {
        await this.subscribe(consumer, session);
        break;
      } catch (error) {
        if (!session.open || this.connection.stopped) continue;
        throw new NovaletError(
          'BROKER_CONSUME_FAILED',
          `The broker at ${describeAddress(session.address)} refused a consumer on queue '${queue}': ${this.scrub(error)}.`,
          'Consume only from queues the topology declares (messaging/topology.ts), with a user that may read them.',
        );
      }
    }
    consumer.active = true;
    this.consumers.add(consumer);
    return { cancel: () => this.cancelConsumer(consumer) };
  }

  /** Every consumer on a new connection; one the broker refuses is retried later, unless the connection itself went (then this rejects). */
  async resumeAll(session: Session): Promise<void> {
    for (const consumer of this.consumers) {
      if (consumer.cancelled) continue;
      try {
        await this.subscribe(consumer, session);
      } catch (error) {
        if (!session.open) throw error;
        this.scheduleRecovery(consumer, session, error);
      }
    }
  }

  /** Cancels every consumer (bounded waits); deliveries in hand may still be settled. */
  async cancelAll(): Promise<void> {
    await Promise.all([...this.consumers].map((consumer) => this.cancelConsumer(consumer)));
  }

  private async subscribe(consumer: Consumer, session: Session): Promise<void> {
    const channel = await session.model.createChannel();
    const state: ChannelState = { open: true };
    const where = describeAddress(session.address);
    const id = this.connection.id;
    channel.on('error', (error: Error) => {
      if (consumer.active) this.log.warn({ broker: where }, `[${id}] The broker closed the channel consuming from queue '${consumer.queue}': ${this.scrub(error)}.`);
    });
    channel.on('close', () => {
      state.open = false;
      if (consumer.channel !== channel) return;
      // Only a channel that was consuming: a failed subscription reports itself.
      const wasConsuming = consumer.tag !== null;
      consumer.tag = null;
      if (wasConsuming && consumer.active && !consumer.cancelled && !this.connection.stopped) this.scheduleRecovery(consumer, session);
    });
    consumer.channel = channel;
    consumer.channelState = state;
    try {
      if (consumer.prefetch > 0) await channel.prefetch(consumer.prefetch);
      const { consumerTag } = await channel.consume(
        consumer.queue,
        (message) => {
          if (message) {
            this.deliver(consumer, channel, state, message);
          } else {
            // The broker cancelled the consumer (its queue was deleted): the channel goes, and the recovery declares the topology again and resubscribes.
            this.log.warn({ broker: where }, `[${id}] The broker cancelled the consumer of queue '${consumer.queue}'; consuming from it again.`);
            void channel.close().catch(() => undefined);
          }
        },
        { noAck: false },
      );
      consumer.tag = consumerTag;
      consumer.recoveryFailures = 0;
      // Cancelled while this subscription was on its way.
      if (consumer.cancelled) void this.cancelConsumerChannel(consumer, channel);
      if (consumer.recoveryTimer) clearTimeout(consumer.recoveryTimer);
      consumer.recoveryTimer = null;
    } catch (error) {
      if (consumer.channel === channel) {
        consumer.channel = null;
        consumer.channelState = null;
      }
      await channel.close().catch(() => undefined);
      throw error;
    }
  }

  /** A consumer whose channel went while its connection stays: a new channel, after the topology is declared again, with oslo's waits. */
  private scheduleRecovery(consumer: Consumer, session: Session, error?: unknown): void {
    if (consumer.recoveryTimer) {
      // One pending recovery per consumer; one left from a lost connection gives way.
      if (consumer.recoverySession === session) return;
      clearTimeout(consumer.recoveryTimer);
    }
    consumer.recoverySession = session;
    const o = this.options;
    const delay = Math.min(o.retryIntervalSeconds + o.retryBackoffSeconds * consumer.recoveryFailures, o.intervalMaxSeconds);
    const where = describeAddress(session.address);
    if (error !== undefined) {
      this.log.error(
        { broker: where },
        `[${this.connection.id}] Consuming from queue '${consumer.queue}' on AMQP server ${where} failed: ${this.scrub(error)}. Trying again in ${delay} seconds.`,
      );
    }
    consumer.recoveryTimer = setTimeout(() => {
      consumer.recoveryTimer = null;
      // A lost connection is the connection loop's to resume.
      if (consumer.cancelled || this.connection.stopped || !session.open || this.connection.current !== session) return;
      if (consumer.channelState?.open && consumer.tag) return;
      void (async () => {
        try {
          await this.connection.declare(session);
          await this.subscribe(consumer, session);
          this.log.info({ broker: where }, `[${this.connection.id}] Consuming from queue '${consumer.queue}' again.`);
        } catch (failure) {
          if (!session.open || this.connection.stopped || consumer.cancelled) return;
          consumer.recoveryFailures++;
          this.scheduleRecovery(consumer, session, failure instanceof TopologyError ? failure.cause : failure);
        }
      })();
    }, delay * 1000);
  }

  private deliver(consumer: Consumer, channel: Channel, state: ChannelState, message: ConsumeMessage): void {
    consumer.unsettled++;
    let settled = false;
    const settle = (action: () => void): void => {
      if (settled) return;
      settled = true;
      consumer.unsettled--;
      if (state.open) {
        try {
          action();
        } catch {
          // The channel closed under us: the broker redelivers.
        }
      }
      if (consumer.cancelled && consumer.unsettled === 0 && consumer.channel === channel) void channel.close().catch(() => undefined);
    };
    const delivery: Delivery = {
      content: message.content,
      exchange: message.fields.exchange,
      routingKey: message.fields.routingKey,
      redelivered: message.fields.redelivered,
      properties: propertiesOf(message),
      ack: () => settle(() => channel.ack(message)),
      nack: (requeue: boolean) => settle(() => channel.nack(message, false, requeue)),
    };
    const limit = this.options.maxMessageBytes;
    if (message.content.length > limit) {
      void this.moveToDeadLetter(consumer, delivery, 'MESSAGE_TOO_LARGE', `The message is ${message.content.length} bytes, more than [oslo_messaging_rabbit] max_message_size (${limit}); it was not read.`);
      return;
    }
    void (async () => {
      try {
        await consumer.handler(delivery);
      } catch (error) {
        if (!settled) await this.moveToDeadLetter(consumer, delivery, 'HANDLER_FAILED', `The handler failed: ${this.scrub(error)}`);
        else this.log.error({ queue: consumer.queue }, `The handler of queue '${consumer.queue}' failed after settling its message: ${this.scrub(error)}.`);
      }
    })();
  }

  /** Moves a delivery to novalet.dead with the reason (confirmed before the ack); requeued if that fails. */
  private async moveToDeadLetter(consumer: Consumer, delivery: Delivery, code: DeadLetterCode, reason: string): Promise<void> {
    try {
      await this.deadLetters.write(delivery, code, reason, { queue: consumer.queue });
      delivery.ack();
    } catch (error) {
      this.log.error({ queue: consumer.queue }, `A message of queue '${consumer.queue}' could not be moved to ${DEAD_LETTER} and is requeued: ${this.scrub(error)}.`);
      delivery.nack(true);
    }
  }

  private async cancelConsumer(consumer: Consumer): Promise<void> {
    if (consumer.cancelled) return;
    consumer.cancelled = true;
    this.consumers.delete(consumer);
    if (consumer.recoveryTimer) clearTimeout(consumer.recoveryTimer);
    consumer.recoveryTimer = null;
    if (consumer.channel && consumer.channelState?.open) await this.cancelConsumerChannel(consumer, consumer.channel);
  }

  private async cancelConsumerChannel(consumer: Consumer, channel: Channel): Promise<void> {
    if (consumer.tag) await withTimeout(channel.cancel(consumer.tag), STOP_WAIT_MS).catch(() => undefined);
    consumer.tag = null;
    if (consumer.unsettled === 0) await withTimeout(channel.close(), STOP_WAIT_MS).catch(() => undefined);
  }
}
