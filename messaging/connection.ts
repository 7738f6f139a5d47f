import { randomUUID } from 'node:crypto';
import type { Socket } from 'node:net';
import { connect, type ChannelModel } from 'amqplib';
import type { Logger } from '../config/logger.js';
import { readTlsFiles, type BrokerOptions } from './broker-options.js';
import { stoppedError } from './broker-errors.js';
import { STOP_WAIT_MS, withTimeout } from './bounded-wait.js';
import { DEAD_LETTER, deadLetterQueueArguments, declareTopology, type TopologySpec } from './topology.js';
import { describeAddress, type BrokerAddress } from './transport-url.js';

/**
 * The connection to RabbitMQ and its reconnection, as oslo.messaging's
 * RabbitMQ driver does for nova: the hosts of transport_url tried in turn,
 * forever, waiting rabbit_retry_interval, then rabbit_retry_backoff more
 * each round, at most rabbit_interval_max (kombu's failover: the next host
 * at once, the wait after a full round); every connection declares the
 * topology again (messaging/topology.ts) and resumes every consumer (the
 * `resume` hook) before it is used, so the service is never up but deaf;
 * its log lines read as oslo's, and name a broker by host:port only, never
 * with its credentials.
 */

/** One AMQP connection, from open to close; what rides on it (the publishing channel, the reply queue, consumers' channels) is keyed on it. */
export interface Session {
  readonly model: ChannelModel;
  readonly address: BrokerAddress;
  open: boolean;
  /** Resolves with why, once the connection is gone. */
  readonly closed: Promise<Error>;
}

export type BrokerState = 'connecting' | 'connected' | 'closed';

export interface ConnectionHooks {
  /** Resumes every consumer on a new session, after the topology is declared and before the session is used; rejects only when the session went meanwhile. */
  resume(session: Session): Promise<void>;
  connected(reconnect: boolean): void;
  disconnected(reason: Error): void;
}

// A TCP or TLS connection that is not open within this is a failed attempt
// (a blackholed address must not hold the round-robin).
const CONNECT_TIMEOUT_MS = 10_000;

interface Waiter {
  resolve(session: Session): void;
  reject(error: unknown): void;
}

/** A topology declaration the broker refused (the connection itself was fine). */
export class TopologyError extends Error {
  override readonly cause: unknown;
  constructor(cause: unknown) {
    super(cause instanceof Error ? cause.message : String(cause));
    this.cause = cause;
  }
}

export class Connection {
  /** As oslo's connection_id: one per Broker, in every log line of it. */
  readonly id = randomUUID();

  private currentState: BrokerState = 'connecting';
  private reconnectCount = 0;
  private session: Session | null = null;
  private index = 0;
  private loop: Promise<void> | null = null;
  private isStopped = false;
  private readonly firstConnection: Promise<void>;
  private settleFirst!: { resolve(): void; reject(error: unknown): void };
  private readonly waiters = new Set<Waiter>();
  private readonly sleeps = new Set<() => void>();
  private deadLetterMismatchLogged = false;

  constructor(
    private readonly options: BrokerOptions,
    private readonly log: Logger,
    private readonly topology: TopologySpec,
    private readonly scrub: (error: unknown) => string,
    private readonly hooks: ConnectionHooks,
  ) {
    this.firstConnection = new Promise<void>((resolve, reject) => {
      this.settleFirst = { resolve, reject };
    });
    // Nobody may be awaiting it (start() not called before stop()).
    this.firstConnection.catch(() => undefined);
  }

  get state(): BrokerState {
    return this.currentState;
  }

  get reconnects(): number {
    return this.reconnectCount;
  }

  get stopped(): boolean {
    return this.isStopped;
  }

  /** The session in use, null while connecting. */
  get current(): Session | null {
    return this.session?.open ? this.session : null;
  }

  get address(): string | null {
    return this.session?.open ? describeAddress(this.session.address) : null;
  }

  /** Starts the loop (once); resolves once connected the first time, rejects BROKER_STOPPED if stopped first. */
  start(): Promise<void> {
    this.loop ??= this.runLoop().catch((error: unknown) => {
      this.log.fatal({ broker: this.address }, `[${this.id}] The AMQP connection loop failed: ${this.scrub(error)}`);
    });
    return this.firstConnection;
  }

  private async runLoop(): Promise<void> {
    let failures = 0;
    let connectedBefore = false;
    while (!this.isStopped) {
      const address = this.options.addresses[this.index]!;
      let session: Session;
      try {
        session = await this.openSession(address);
      } catch (error) {
        if (this.isStopped) break;
        const delay = this.retryDelay(failures++);
        if (error instanceof TopologyError) {
          const words = this.scrub(error.cause);
          const hint = words.includes('PRECONDITION_FAILED')
            ? " A queue's type cannot change once it exists: after changing [oslo_messaging_rabbit] rabbit_quorum_queue, delete novalet.scheduler, novalet.compute.<host> and novalet.dead."
            : '';
          this.log.error(
            { broker: describeAddress(address) },
            `[${this.id}] Declaring novalet's exchanges and queues on AMQP server ${describeAddress(address)} failed: ${words}. Trying again in ${delay} seconds.${hint}`,
          );
        } else {
          this.logUnreachable(address, error, delay);
        }
        this.index = (this.index + 1) % this.options.addresses.length;
        await this.sleep(delay * 1000);
        continue;
      }
      if (this.isStopped) {
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
        this.log.info({ broker: where }, `[${this.id}] Reconnected to AMQP server on ${where} via [amqp] client with port ${localPort}.`);
      } else {
        this.log.debug({ broker: where }, `[${this.id}] Connected to AMQP server on ${where} via [amqp] client with port ${localPort}.`);
      }
      for (const waiter of this.waiters) waiter.resolve(session);
      this.waiters.clear();
      this.hooks.connected(connectedBefore);
      if (!connectedBefore) this.settleFirst.resolve();
      connectedBefore = true;

      const reason = await session.closed;
      if (this.isStopped) break;
      this.currentState = 'connecting';
      this.hooks.disconnected(reason);
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
    this.log.error({ broker: where }, `[${this.id}] AMQP server on ${where} is unreachable: ${this.scrub(error)}. Trying again in ${delay} seconds.`);
  }

  /** A connection with the topology declared and every consumer resumed. */
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
        clientProperties: { connection_name: `novalet:${process.pid}:${this.id}` },
        ...tls,
      },
    );
    let lastError: Error | null = null;
    let markClosed!: (error: Error) => void;
    const session: Session = { model, address, open: true, closed: new Promise<Error>((resolve) => (markClosed = resolve)) };
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
      await this.hooks.resume(session);
    } catch (error) {
      await closeQuietly(model);
      throw error;
    }
    return session;
  }

  /** Declares the topology on `session` (again); a refusal while the connection stays is a TopologyError. */
  async declare(session: Session): Promise<void> {
    let mismatch: string | null;
    try {
      ({ deadLetterMismatch: mismatch } = await declareTopology(() => session.model.createChannel(), this.topology, {
        quorum: this.options.quorumQueues,
        deadLetterMaxLength: this.options.deadLetterMaxLength,
      }));
    } catch (error) {
      throw session.open ? new TopologyError(error) : error;
    }
    if (mismatch !== null && !this.deadLetterMismatchLogged) {
      // Once per process: every reconnection meets the same queue.
      this.deadLetterMismatchLogged = true;
      const asked = Object.entries(deadLetterQueueArguments({ quorum: this.options.quorumQueues, deadLetterMaxLength: this.options.deadLetterMaxLength }))
        .map(([key, value]) => `${key} = ${String(value)}`)
        .join(', ');
      const where = describeAddress(session.address);
      const vhost = session.address.vhost === '/' ? '' : ` -p '${session.address.vhost.replace(/'/g, "'\\''")}'`;
      this.log.warn(
        { broker: where },
        `[${this.id}] The queue ${DEAD_LETTER} on AMQP server ${where} exists with other arguments than this process declares (${asked}, from [oslo_messaging_rabbit] dead_letter_max_length and rabbit_quorum_queue): ${this.scrub(mismatch)}. ` +
          `The existing queue is used as it is, bounded only as it was made. To bound it, delete ${DEAD_LETTER} (its messages are lost; the next start declares it again), ` +
          `or set a policy: rabbitmqctl set_policy${vhost} novalet-dead '^novalet\\.dead$' '{"max-length":${this.options.deadLetterMaxLength}}' --apply-to queues.`,
      );
    }
  }

  /** The session in use, or the next one; rejects when stopped, or at `deadline`. */
  waitSession(deadline?: number): Promise<Session> {
    if (this.isStopped) return Promise.reject(stoppedError('wait for a connection'));
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

  /** A wait that stop() cuts short. */
  sleep(ms: number): Promise<void> {
    if (this.isStopped || ms <= 0) return Promise.resolve();
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

  /** No reconnection from now on: waits are cut short, waiters and the first connection rejected. The connection stays open for the rest of the shutdown. */
  beginStop(): void {
    this.isStopped = true;
    this.settleFirst.reject(stoppedError('connect'));
    for (const wake of this.sleeps) wake();
    this.sleeps.clear();
    for (const waiter of this.waiters) waiter.reject(stoppedError('wait for a connection'));
    this.waiters.clear();
  }

  /** Closes the connection (bounded: a broker that does not answer gets its socket destroyed) and waits for the loop to end. */
  async close(): Promise<void> {
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
}

async function closeQuietly(model: ChannelModel): Promise<void> {
  await withTimeout(model.close(), STOP_WAIT_MS).catch(() => {
    (model.connection as unknown as { stream?: Socket }).stream?.destroy();
  });
}
