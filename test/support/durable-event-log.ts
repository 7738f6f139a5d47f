/**
 * A follower of `novalet.events` that survives the broker going away, as a
 * scheduler's would: a durable queue of its own bound to every key, read
 * with manual acks, and a connection made again (every 500 ms) after the
 * broker comes back. Events published while the follower is away wait in
 * the queue; one delivered again after a lost ack is kept again (consumers
 * drop repeats by envelope id: tests check that repeats share it).
 * On amqplib straight, not novalet's messaging layer.
 */
import { randomUUID } from 'node:crypto';
import amqp from 'amqplib';
import type { BusMessage } from './bus-client.js';

export class DurableEventLog {
  readonly events: BusMessage[] = [];
  readonly queue = `test.events.${randomUUID()}`;
  #model: amqp.ChannelModel | null = null;
  #closed = false;
  #connecting: Promise<void> | null = null;

  private constructor(private readonly url: string) {}

  /** Declares the queue and follows it; resolves once it is bound. */
  static async follow(url: string): Promise<DurableEventLog> {
    const log = new DurableEventLog(url);
    await log.#connect();
    return log;
  }

  get connected(): boolean {
    return this.#model !== null;
  }

  async #connect(): Promise<void> {
    const model = await amqp.connect(this.url);
    model.on('error', () => undefined);
    model.on('close', () => {
      if (this.#model === model) this.#model = null;
      if (!this.#closed) this.#again();
    });
    const channel = await model.createChannel();
    channel.on('error', () => undefined);
    await channel.assertExchange('novalet.events', 'topic', { durable: true });
    await channel.assertQueue(this.queue, { durable: true, autoDelete: false, exclusive: false });
    await channel.bindQueue(this.queue, 'novalet.events', '#');
    await channel.consume(this.queue, (m) => {
      if (!m) return;
      this.events.push({ routingKey: m.fields.routingKey, envelope: JSON.parse(m.content.toString('utf8')), headers: m.properties.headers ?? {} });
      channel.ack(m);
    });
    this.#model = model;
  }

  /** Connects again once the broker answers (until close()). */
  #again(): void {
    this.#connecting ??= (async () => {
      while (!this.#closed && this.#model === null) {
        await new Promise((r) => setTimeout(r, 500));
        if (this.#closed) break;
        await this.#connect().catch(() => undefined);
      }
    })().finally(() => (this.#connecting = null));
  }

  /** The events of an instance, by name, in the order they came (repeats included). */
  eventsOf(uuid: string): string[] {
    return this.messagesOf(uuid).map((m) => m.routingKey.slice(`instance.${uuid}.`.length));
  }

  messagesOf(uuid: string, event?: string): BusMessage[] {
    const prefix = `instance.${uuid}.`;
    return this.events.filter((e) => (event === undefined ? e.routingKey.startsWith(prefix) : e.routingKey === `${prefix}${event}`));
  }

  /** The distinct envelope ids an instance's `event` came under. */
  idsOf(uuid: string, event: string): string[] {
    return [...new Set(this.messagesOf(uuid, event).map((m) => m.envelope.id))];
  }

  async waitFor<T>(what: string, check: () => T | undefined | false, timeoutMs: number): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = check();
      if (found !== undefined && found !== false) return found;
      if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; events so far: ${this.events.map((e) => e.routingKey).join(', ')}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.#connecting;
    const model = this.#model;
    this.#model = null;
    if (model) {
      const channel = await model.createChannel().catch(() => null);
      await channel?.deleteQueue(this.queue).catch(() => undefined);
      await model.close().catch(() => undefined);
    }
  }
}
