import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { connect, type Channel, type ChannelModel, type ConfirmChannel, type ConsumeMessage, type Options } from 'amqplib';
import type { Logger } from '../config/logger.js';
import { maskCredentialsInText } from '../config/mask-credentials.js';
import { errorWords } from './error-words.js';
import { NovaletError } from '../config/novalet-error.js';
import { readTlsFiles, type BrokerOptions } from './broker-options.js';
import { DEAD_LETTER, declareTopology, type TopologySpec } from './topology.js';
import { deadLetterHeaders, type DeadLetterCode } from './contracts/dead-letter.js';
import { describeAddress, type BrokerAddress } from './transport-url.js';

/**
 * novalet's connection to RabbitMQ: a small reconnecting layer over amqplib.
 *
 * It does what oslo.messaging's RabbitMQ driver does for nova: the hosts of
 * transport_url are tried in turn, forever, waiting rabbit_retry_interval,
 * then rabbit_retry_backoff more each round, at most rabbit_interval_max
 * (kombu's failover: the next host at once, the wait after a full round);
 * every connection declares the topology again (messaging/topology.ts) and
 * resumes every consumer, so the service is never up but deaf; its log lines
 * read as oslo's, and name a broker by host:port only, never with its
 * credentials.
 */

export interface DeliveryProperties {
  messageId?: string;
  correlationId?: string;
  replyTo?: string;
  contentType?: string;
  headers?: Record<string, unknown>;
}

export interface Delivery {
  content: Buffer;
  exchange: string;
  routingKey: string;
  redelivered: boolean;
  properties: DeliveryProperties;
  /** No-op when the channel that delivered it is gone (the broker redelivers it), or when already acked or nacked. */
  ack(): void;
  nack(requeue: boolean): void;
}

export type DeliveryHandler = (delivery: Delivery) => void | Promise<void>;

export interface PublishOptions {
  correlationId?: string;
  replyTo?: string;
  messageId?: string;
  headers?: Record<string, unknown>;
  /** Default true (delivery_mode 2). */
  persistent?: boolean;
  /** A message no queue takes comes back (basic.return) and the publish rejects with MESSAGE_UNROUTABLE. */
  mandatory?: boolean;
  expiration?: string;
}

export interface ConsumerHandle {
  /** Stops deliveries; deliveries in hand can still be acked, then its channel closes. Idempotent. */
  cancel(): Promise<void>;
}

export type BrokerState = 'connecting' | 'connected' | 'closed';

/** Headers of a message moved to `novalet.dead` by this layer. */
export const DEAD_REASON_HEADER = 'x-novalet-dead-reason';
export const DEAD_QUEUE_HEADER = 'x-novalet-queue';
export const DEAD_EXCHANGE_HEADER = 'x-novalet-original-exchange';
export const DEAD_ROUTING_KEY_HEADER = 'x-novalet-original-routing-key';

/** RabbitMQ's reply queues of this process are named so (exclusive, auto-delete). */
export const REPLY_QUEUE_PREFIX = 'novalet.reply.';

// A TCP or TLS connection that is not open within this is a failed attempt
// (a blackholed address must not hold the round-robin).
const CONNECT_TIMEOUT_MS = 10_000;
// stop() waits at most this for cancels, outstanding confirms and the close.
const STOP_WAIT_MS = 5_000;

interface Session {
  model: ChannelModel;
  address: BrokerAddress;
  open: boolean;
  closed: Promise<Error>;
  publisher: Publisher | null;
  publisherOpening: Promise<Publisher> | null;
  replyQueue: Promise<string> | null;
}

interface Publisher {
  channel: ConfirmChannel;
  open: boolean;
  error: (Error & { code?: number }) | null;
}

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
  session: Session | null;
  channel: Channel | null;
  channelState: ChannelState | null;
  tag: string | null;
  unsettled: number;
  recoveryTimer: NodeJS.Timeout | null;
  recoverySession: Session | null;
  recoveryFailures: number;
}

interface PendingCall {
  resolve(reply: { content: Buffer; properties: DeliveryProperties }): void;
  reject(error: unknown): void;
}

type ConfirmOutcome = { kind: 'ack' } | { kind: 'nack' } | { kind: 'timeout' } | { kind: 'closed'; error: (Error & { code?: number }) | null };

interface Waiter {
  resolve(session: Session): void;
  reject(error: unknown): void;
}

export class Broker extends EventEmitter {
  private readonly options: BrokerOptions;
  private readonly log: Logger;
  private readonly topology: TopologySpec;
  /** As oslo's connection_id: one per Broker, in every log line of it. */
  private readonly connectionId = randomUUID();

  private currentState: BrokerState = 'connecting';
  private reconnectCount = 0;
  private session: Session | null = null;
  private index = 0;
  private loop: Promise<void> | null = null;
  private stopped = false;
  private stopping: Promise<void> | null = null;
  private readonly firstConnection: Promise<void>;
  private settleFirst!: { resolve(): void; reject(error: unknown): void };

  private readonly consumers = new Set<Consumer>();
  private readonly waiters = new Set<Waiter>();
  private readonly sleeps = new Set<() => void>();
  private readonly inFlight = new Set<Promise<unknown>>();
  private readonly calls = new Map<string, PendingCall>();

  constructor(options: BrokerOptions, log: Logger, topology: TopologySpec) {
    super();
    if (options.addresses.length === 0) throw new RangeError('BrokerOptions.addresses is empty');
    this.options = options;
    this.log = log;
    this.topology = topology;
    this.firstConnection = new Promise<void>((resolve, reject) => {
      this.settleFirst = { resolve, reject };
    });
    // Nobody may be awaiting it (start() not called before stop()).
    this.firstConnection.catch(() => undefined);
  }

  get state(): BrokerState {
    return this.currentState;
  }

  /** Successful reconnections after the first connection. */
  get reconnects(): number {
    return this.reconnectCount;
  }

  /** host:port of the broker connected to, null while not connected. */
  get address(): string | null {
    return this.session?.open ? describeAddress(this.session.address) : null;
  }

  override on(event: 'connected' | 'disconnected', listener: (arg: any) => void): this {
    return super.on(event, listener);
  }

  /** Connects (trying addresses in turn, forever, with backoff) and declares the topology; resolves once connected the first time. Rejects with the abort reason if `signal` aborts first (and the Broker is stopped then). */
  start(signal?: AbortSignal): Promise<void> {
    if (this.stopped) return Promise.reject(stoppedError('start'));
    this.loop ??= this.runLoop().catch((error: unknown) => {
      this.log.fatal({ broker: this.address }, `[${this.connectionId}] The AMQP connection loop failed: ${this.scrub(error)}`);
    });
    if (!signal) return this.firstConnection;
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
      this.firstConnection.then(
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

  // ------------------------------------------------------------ connecting

  private async runLoop(): Promise<void> {
    let failures = 0;
    let connectedBefore = false;
    while (!this.stopped) {
      const address = this.options.addresses[this.index]!;
      let session: Session;
      try {
        session = await this.openSession(address);
      } catch (error) {
        if (this.stopped) break;
        const delay = this.retryDelay(failures++);
        if (error instanceof TopologyError) {
          const words = this.scrub(error.cause);
          const hint = words.includes('PRECONDITION_FAILED')
            ? " A queue's type cannot change once it exists: after changing [oslo_messaging_rabbit] rabbit_quorum_queue, delete novalet.scheduler, novalet.compute.<host> and novalet.dead."
            : '';
          this.log.error(
            { broker: describeAddress(address) },
            `[${this.connectionId}] Declaring novalet's exchanges and queues on AMQP server ${describeAddress(address)} failed: ${words}. Trying again in ${delay} seconds.${hint}`,
          );
        } else {
          this.logUnreachable(address, error, delay);
        }
        this.index = (this.index + 1) % this.options.addresses.length;
        await this.sleep(delay * 1000);
        continue;
      }
      if (this.stopped) {
        await closeQuietly(session.model);
        break;
      }
      failures = 0;
      this.session = session;
      this.currentState = 'connected';
      const localPort = (session.model.connection as unknown as { stream?: Socket }).stream?.localPort;
      const where = describeAddress(address);
      if (connectedBefore) {
        this.reconnectCount++;
        this.log.info({ broker: where }, `[${this.connectionId}] Reconnected to AMQP server on ${where} via [amqp] client with port ${localPort}.`);
      } else {
        this.log.debug({ broker: where }, `[${this.connectionId}] Connected to AMQP server on ${where} via [amqp] client with port ${localPort}.`);
      }
      for (const waiter of this.waiters) waiter.resolve(session);
      this.waiters.clear();
      this.emitSafely('connected', { reconnect: connectedBefore });
      if (!connectedBefore) this.settleFirst.resolve();
      connectedBefore = true;

      const reason = await session.closed;
      if (this.stopped) break;
      this.currentState = 'connecting';
      this.emitSafely('disconnected', reason);
      const delay = this.retryDelay(failures++);
      this.logUnreachable(address, reason, delay);
      this.index = (this.index + 1) % this.options.addresses.length;
      await this.sleep(delay * 1000);
    }
  }

  /**
   * Seconds before the next attempt after `failures` failed ones (0 = the
   * first): kombu's failover, which oslo uses, tries the next host at once and
   * waits only after a full round of them; the waits grow as oslo's.
   */
  private retryDelay(failures: number): number {
    const hosts = this.options.addresses.length;
    if ((failures + 1) % hosts !== 0) return 0;
    const round = (failures + 1) / hosts - 1;
    return Math.min(this.options.retryIntervalSeconds + this.options.retryBackoffSeconds * round, this.options.intervalMaxSeconds);
  }

  private logUnreachable(address: BrokerAddress, error: unknown, delay: number): void {
    const where = describeAddress(address);
    this.log.error({ broker: where }, `[${this.connectionId}] AMQP server on ${where} is unreachable: ${this.scrub(error)}. Trying again in ${delay} seconds.`);
  }

  /** A connection with the topology declared and the reply queue and every consumer resumed. */
  private async openSession(address: BrokerAddress): Promise<Session> {
    const tls = this.options.tls ? readTlsFiles(this.options.tls) : {};
    const model = await connect(
      {
        protocol: this.options.tls ? 'amqps' : 'amqp',
        hostname: address.host,
        port: address.port,
        username: address.username,
        password: address.password,
        // amqplib percent-decodes the vhost of a URL object too.
        vhost: encodeURIComponent(address.vhost),
        heartbeat: this.options.heartbeatSeconds,
      },
      {
        timeout: CONNECT_TIMEOUT_MS,
        clientProperties: { connection_name: `novalet:${process.pid}:${this.connectionId}` },
        ...tls,
      },
    );
    let lastError: Error | null = null;
    let markClosed!: (error: Error) => void;
    const session: Session = {
      model,
      address,
      open: true,
      closed: new Promise<Error>((resolve) => (markClosed = resolve)),
      publisher: null,
      publisherOpening: null,
      replyQueue: null,
    };
    const where = describeAddress(address);
    model.on('error', (error: Error) => {
      lastError = error;
    });
    model.on('close', (error?: Error) => {
      session.open = false;
      markClosed(error ?? lastError ?? new Error('Connection closed'));
    });
    model.on('blocked', (reason: string) => this.log.error({ broker: where }, `The broker has blocked the connection: ${this.scrub(reason)}`));
    model.on('unblocked', () => this.log.info({ broker: where }, 'The broker has unblocked the connection'));
    try {
      await this.declare(session);
      for (const consumer of this.consumers) {
        if (consumer.cancelled) continue;
        try {
          await this.subscribe(consumer, session);
        } catch (error) {
          if (!session.open) throw error;
          this.scheduleRecovery(consumer, session, error);
        }
      }
    } catch (error) {
      await closeQuietly(model);
      throw error;
    }
    return session;
  }

  private async declare(session: Session): Promise<void> {
    const channel = await session.model.createChannel();
    channel.on('error', () => undefined); // the failed declaration rejects with it
    try {
      await declareTopology(channel, this.topology, this.options.quorumQueues);
    } catch (error) {
      throw session.open ? new TopologyError(error) : error;
    }
    await channel.close().catch(() => undefined);
  }

  // ------------------------------------------------------------ publishing

  /** Publishes with publisher confirms (content_type application/json, persistent unless told otherwise); while disconnected waits for the reconnection; resolves once the broker confirmed; rejects with BROKER_PUBLISH_FAILED (nack, refused, not confirmed within rpcTimeoutSeconds, stopped). Unroutable is fine (not mandatory). */
  publish(exchange: string, routingKey: string, content: Buffer, options: PublishOptions = {}): Promise<void> {
    return this.track(this.publishUntil(Date.now() + this.options.rpcTimeoutSeconds * 1000, exchange, routingKey, content, options));
  }

  private async publishUntil(deadline: number, exchange: string, routingKey: string, content: Buffer, options: PublishOptions): Promise<void> {
    const properties: Options.Publish = {
      contentType: 'application/json',
      persistent: options.persistent ?? true,
      ...(options.correlationId !== undefined && { correlationId: options.correlationId }),
      ...(options.replyTo !== undefined && { replyTo: options.replyTo }),
      ...(options.messageId !== undefined && { messageId: options.messageId }),
      ...(options.headers !== undefined && { headers: options.headers }),
      ...(options.expiration !== undefined && { expiration: options.expiration }),
    };
    const target = `to exchange '${exchange}' with routing key '${routingKey}'`;
    for (;;) {
      if (this.stopped) throw publishFailed(`The message ${target} was not published: the broker connection was stopped.`);
      let session: Session;
      try {
        session = await this.waitSession(deadline);
      } catch (error) {
        if (this.stopped) throw publishFailed(`The message ${target} was not published: the broker connection was stopped.`);
        throw publishFailed(`The message ${target} was not confirmed within ${this.options.rpcTimeoutSeconds} seconds ([DEFAULT] rpc_response_timeout): no broker was reachable.`);
      }
      let publisher: Publisher;
      try {
        publisher = await this.publisherFor(session);
      } catch {
        // The connection is going; wait for the next one.
        await this.sleep(Math.min(1000, Math.max(0, deadline - Date.now())));
        continue;
      }
      const outcome = await confirmOnce(publisher, exchange, routingKey, content, properties, deadline);
      switch (outcome.kind) {
        case 'ack':
          return;
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

  private async publisherFor(session: Session): Promise<Publisher> {
    if (session.publisher?.open) return session.publisher;
    session.publisherOpening ??= (async () => {
      const channel = await session.model.createConfirmChannel();
      const publisher: Publisher = { channel, open: true, error: null };
      channel.on('error', (error: Error) => {
        publisher.error = error;
        this.log.warn({ broker: describeAddress(session.address) }, `[${this.connectionId}] The broker closed the publishing channel: ${this.scrub(error)}. A new channel is opened.`);
      });
      channel.on('close', () => {
        publisher.open = false;
      });
      session.publisher = publisher;
      return publisher;
    })().finally(() => {
      session.publisherOpening = null;
    });
    return session.publisherOpening;
  }

  // ------------------------------------------------------------ consuming

  /** Manual acks, prefetch per consumer (basic.qos on its own channel; 0 = no limit); resolves once subscribed; resumed after every reconnect and channel loss. The handler's errors are logged and its delivery moved to novalet.dead; a delivery larger than maxMessageBytes goes there unread. Rejects with BROKER_CONSUME_FAILED when the broker refuses the first subscription (no such queue). */
  async consume(queue: string, handler: DeliveryHandler, options: { prefetch: number }): Promise<ConsumerHandle> {
    const consumer: Consumer = {
      queue,
      handler,
      prefetch: options.prefetch,
      active: false,
      cancelled: false,
      session: null,
      channel: null,
      channelState: null,
      tag: null,
      unsettled: 0,
      recoveryTimer: null,
      recoverySession: null,
      recoveryFailures: 0,
    };
    for (;;) {
      if (this.stopped) throw stoppedError(`consume from queue '${queue}'`);
      let session: Session;
      try {
        session = await this.waitSession();
      } catch {
        throw stoppedError(`consume from queue '${queue}'`);
      }
      try {
        await this.subscribe(consumer, session);
        break;
      } catch (error) {
        if (!session.open || this.stopped) continue;
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

  private async subscribe(consumer: Consumer, session: Session): Promise<void> {
    const channel = await session.model.createChannel();
    const state: ChannelState = { open: true };
    const where = describeAddress(session.address);
    channel.on('error', (error: Error) => {
      if (consumer.active) this.log.warn({ broker: where }, `[${this.connectionId}] The broker closed the channel consuming from queue '${consumer.queue}': ${this.scrub(error)}.`);
    });
    channel.on('close', () => {
      state.open = false;
      if (consumer.channel !== channel) return;
      // Only a channel that was consuming: a failed subscription reports itself.
      const wasConsuming = consumer.tag !== null;
      consumer.tag = null;
      if (wasConsuming && consumer.active && !consumer.cancelled && !this.stopped) this.scheduleRecovery(consumer, session);
    });
    consumer.session = session;
    consumer.channel = channel;
    consumer.channelState = state;
    try {
      if (consumer.prefetch > 0) await channel.prefetch(consumer.prefetch);
      const { consumerTag } = await channel.consume(
        consumer.queue,
        (message) => {
          if (message) this.deliver(consumer, channel, state, message);
          else this.serverCancelled(consumer, channel, session);
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

  /** The broker cancelled the consumer (its queue was deleted): the channel goes, and the recovery declares the topology again and resubscribes. */
  private serverCancelled(consumer: Consumer, channel: Channel, session: Session): void {
    this.log.warn({ broker: describeAddress(session.address) }, `[${this.connectionId}] The broker cancelled the consumer of queue '${consumer.queue}'; consuming from it again.`);
    void channel.close().catch(() => undefined);
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
    if (error !== undefined) {
      this.log.error(
        { broker: describeAddress(session.address) },
        `[${this.connectionId}] Consuming from queue '${consumer.queue}' on AMQP server ${describeAddress(session.address)} failed: ${this.scrub(error)}. Trying again in ${delay} seconds.`,
      );
    }
    consumer.recoveryTimer = setTimeout(() => {
      consumer.recoveryTimer = null;
      // A lost connection is the connection loop's to resume.
      if (consumer.cancelled || this.stopped || !session.open || this.session !== session) return;
      if (consumer.channelState?.open && consumer.tag) return;
      void (async () => {
        try {
          await this.declare(session);
          await this.subscribe(consumer, session);
          this.log.info({ broker: describeAddress(session.address) }, `[${this.connectionId}] Consuming from queue '${consumer.queue}' again.`);
        } catch (failure) {
          if (!session.open || this.stopped || consumer.cancelled) return;
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
      const reason = `The message is ${message.content.length} bytes, more than [oslo_messaging_rabbit] max_message_size (${limit}).`;
      this.log.warn({ queue: consumer.queue }, `A message on queue '${consumer.queue}' is moved to ${DEAD_LETTER} unread: ${reason}`);
      void this.deadLetter(consumer, delivery, message, 'MESSAGE_TOO_LARGE', reason);
      return;
    }
    void (async () => {
      try {
        await consumer.handler(delivery);
      } catch (error) {
        this.log.error({ queue: consumer.queue }, `The handler of queue '${consumer.queue}' failed: ${this.scrub(error)}${settled ? '' : `; the message is moved to ${DEAD_LETTER}`}.`);
        if (!settled) await this.deadLetter(consumer, delivery, message, 'HANDLER_FAILED', `The handler failed: ${this.scrub(error)}`);
      }
    })();
  }

  /** Moves a delivery to novalet.dead with the reason (confirmed before the ack); requeued if that fails. */
  private async deadLetter(consumer: Consumer, delivery: Delivery, message: ConsumeMessage, code: DeadLetterCode, reason: string): Promise<void> {
    try {
      await this.publish(DEAD_LETTER, message.fields.routingKey, message.content, {
        ...(delivery.properties.messageId !== undefined && { messageId: delivery.properties.messageId }),
        ...(delivery.properties.correlationId !== undefined && { correlationId: delivery.properties.correlationId }),
        ...(delivery.properties.replyTo !== undefined && { replyTo: delivery.properties.replyTo }),
        headers: {
          ...delivery.properties.headers,
          [DEAD_REASON_HEADER]: reason,
          [DEAD_QUEUE_HEADER]: consumer.queue,
          [DEAD_EXCHANGE_HEADER]: message.fields.exchange,
          [DEAD_ROUTING_KEY_HEADER]: message.fields.routingKey,
          // The contract's headers (docs/messages.md, "Dead-lettering").
          ...deadLetterHeaders(code, reason, message.fields.routingKey),
        },
      });
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

  // ------------------------------------------------------------ RPC

  /** RPC: publishes with reply_to (an exclusive auto-delete reply queue of this connection) and a fresh correlation_id; resolves with the reply; rejects RPC_TIMEOUT after options.timeoutMs (default rpcTimeoutSeconds), BROKER_PUBLISH_FAILED if the request was not confirmed, BROKER_STOPPED if stopped first, the abort reason if `signal` aborts. A reconnection loses the replies of calls in flight (they time out), as with oslo's. */
  call(
    exchange: string,
    routingKey: string,
    content: Buffer,
    options: { timeoutMs?: number; messageId?: string; signal?: AbortSignal } = {},
  ): Promise<{ content: Buffer; properties: DeliveryProperties }> {
    if (this.stopped) return Promise.reject(stoppedError(`call '${routingKey}'`));
    const { signal } = options;
    if (signal?.aborted) return Promise.reject(signal.reason);
    const timeoutMs = options.timeoutMs ?? this.options.rpcTimeoutSeconds * 1000;
    const deadline = Date.now() + timeoutMs;
    const correlationId = randomUUID();
    return new Promise((resolve, reject) => {
      const finish = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        this.calls.delete(correlationId);
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
      this.calls.set(correlationId, pending);
      void (async () => {
        const replyTo = await this.replyQueueUntil(deadline);
        await this.publishUntil(deadline, exchange, routingKey, content, {
          correlationId,
          replyTo,
          ...(options.messageId !== undefined && { messageId: options.messageId }),
        });
      })().catch((error: unknown) => {
        // Past the deadline the timer's RPC_TIMEOUT says it better.
        if (Date.now() < deadline) pending.reject(this.stopped ? stoppedError(`call '${routingKey}'`) : error);
      });
    });
  }

  private async replyQueueUntil(deadline: number): Promise<string> {
    for (;;) {
      const session = await this.waitSession(deadline);
      try {
        return await this.replyQueueFor(session);
      } catch (error) {
        if (session.open && !this.stopped) {
          this.log.warn({ broker: describeAddress(session.address) }, `[${this.connectionId}] The reply queue could not be declared: ${this.scrub(error)}.`);
        }
        await this.sleep(Math.min(1000, Math.max(0, deadline - Date.now())));
      }
    }
  }

  private replyQueueFor(session: Session): Promise<string> {
    if (session.replyQueue) return session.replyQueue;
    const opening = (async () => {
      const channel = await session.model.createChannel();
      channel.on('error', () => undefined);
      channel.on('close', () => {
        if (session.replyQueue === opening) session.replyQueue = null;
      });
      const name = REPLY_QUEUE_PREFIX + randomUUID();
      await channel.assertQueue(name, { exclusive: true, autoDelete: true, durable: false });
      await channel.consume(name, (message) => message && this.reply(message), { noAck: true });
      return name;
    })();
    session.replyQueue = opening;
    opening.catch(() => {
      if (session.replyQueue === opening) session.replyQueue = null;
    });
    return opening;
  }

  private reply(message: ConsumeMessage): void {
    const id = message.properties.correlationId as string | undefined;
    const pending = id === undefined ? undefined : this.calls.get(id);
    if (!pending) {
      this.log.debug({}, `[${this.connectionId}] A reply for no call in flight (correlation_id ${String(id)}) is dropped.`);
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

  // ------------------------------------------------------------ stopping

  /** Cancels consumers, waits for pending confirms (bounded), closes; no reconnect afterwards. Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= this.shutdown();
    return this.stopping;
  }

  private async shutdown(): Promise<void> {
    this.stopped = true;
    this.settleFirst.reject(stoppedError('connect'));
    for (const wake of this.sleeps) wake();
    this.sleeps.clear();
    for (const waiter of this.waiters) waiter.reject(stoppedError('wait for a connection'));
    this.waiters.clear();
    await Promise.all([...this.consumers].map((consumer) => this.cancelConsumer(consumer)));
    await withTimeout(Promise.allSettled([...this.inFlight]), STOP_WAIT_MS).catch(() => undefined);
    for (const pending of this.calls.values()) pending.reject(stoppedError('wait for a reply'));
    const session = this.session;
    if (session?.open) {
      const closed = await withTimeout(session.model.close(), STOP_WAIT_MS).then(
        () => true,
        () => false,
      );
      if (!closed) (session.model.connection as unknown as { stream?: Socket }).stream?.destroy();
    }
    if (this.loop) await withTimeout(this.loop, CONNECT_TIMEOUT_MS + STOP_WAIT_MS).catch(() => undefined);
    this.session = null;
    this.currentState = 'closed';
  }

  // ------------------------------------------------------------ helpers

  private waitSession(deadline?: number): Promise<Session> {
    if (this.stopped) return Promise.reject(stoppedError('wait for a connection'));
    if (this.session?.open) return Promise.resolve(this.session);
    return new Promise<Session>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const waiter: Waiter = {
        resolve: (session) => {
          clearTimeout(timer);
          resolve(session);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      };
      if (deadline !== undefined) {
        timer = setTimeout(() => {
          this.waiters.delete(waiter);
          reject(new Error('no connection before the deadline'));
        }, Math.max(0, deadline - Date.now()));
      }
      this.waiters.add(waiter);
    });
  }

  private sleep(ms: number): Promise<void> {
    if (this.stopped || ms <= 0) return Promise.resolve();
    return new Promise((resolve) => {
      const wake = (): void => {
        clearTimeout(timer);
        this.sleeps.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      this.sleeps.add(wake);
    });
  }

  private track<T>(promise: Promise<T>): Promise<T> {
    this.inFlight.add(promise);
    const untrack = (): void => {
      this.inFlight.delete(promise);
    };
    promise.then(untrack, untrack);
    return promise;
  }

  private emitSafely(event: string, arg: unknown): void {
    for (const listener of this.listeners(event)) {
      try {
        (listener as (arg: unknown) => void)(arg);
      } catch (error) {
        this.log.error({}, `A '${event}' listener of the broker connection failed: ${this.scrub(error)}`);
      }
    }
  }

  /**
   * Error text for a log line: URL passwords masked and every configured
   * password (of 3 characters or more, shorter ones would mangle the text)
   * replaced, should a library ever quote one.
   */
  private scrub(error: unknown): string {
    let text = maskCredentialsInText(errorWords(error));
    for (const { password } of this.options.addresses) {
      if (password.length < 3) continue;
      for (const form of new Set([password, encodeURIComponent(password)])) text = text.split(form).join('***');
    }
    return text;
  }
}

/** A topology declaration the broker refused (the connection itself was fine). */
class TopologyError extends Error {
  override readonly cause: unknown;
  constructor(cause: unknown) {
    super(cause instanceof Error ? cause.message : String(cause));
    this.cause = cause;
  }
}

function confirmOnce(publisher: Publisher, exchange: string, routingKey: string, content: Buffer, properties: Options.Publish, deadline: number): Promise<ConfirmOutcome> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve({ kind: 'timeout' }), Math.max(0, deadline - Date.now()));
    try {
      publisher.channel.publish(exchange, routingKey, content, properties, (error: unknown) => {
        clearTimeout(timer);
        if (!error) resolve({ kind: 'ack' });
        else if (error instanceof Error && error.message === 'message nacked') resolve({ kind: 'nack' });
        else resolve({ kind: 'closed', error: publisher.error });
      });
    } catch {
      // Published on a channel that closed meanwhile.
      clearTimeout(timer);
      resolve({ kind: 'closed', error: publisher.error });
    }
  });
}

function propertiesOf(message: ConsumeMessage): DeliveryProperties {
  const p = message.properties;
  return {
    ...(p.messageId !== undefined && { messageId: String(p.messageId) }),
    ...(p.correlationId !== undefined && { correlationId: String(p.correlationId) }),
    ...(p.replyTo !== undefined && { replyTo: String(p.replyTo) }),
    ...(p.contentType !== undefined && { contentType: String(p.contentType) }),
    ...(p.headers !== undefined && { headers: p.headers as Record<string, unknown> }),
  };
}

function publishFailed(message: string): NovaletError {
  return new NovaletError('BROKER_PUBLISH_FAILED', message, 'Check that RabbitMQ runs and has room (no memory or disk alarm), and that the exchange is one of the topology (messaging/topology.ts).');
}

function stoppedError(what: string): NovaletError {
  return new NovaletError('BROKER_STOPPED', `Could not ${what}: the broker connection was stopped.`, 'This is a bug of novalet if it happens outside of shutdown.');
}

async function closeQuietly(model: ChannelModel): Promise<void> {
  await withTimeout(model.close(), STOP_WAIT_MS).catch(() => {
    (model.connection as unknown as { stream?: Socket }).stream?.destroy();
  });
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}
