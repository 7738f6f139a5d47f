/**
 * A client of novalet's wire contract for tests, on amqplib straight (not
 * novalet's messaging layer): it sends requests as docs/messages.md says,
 * follows novalet.events through a queue of its own and reads novalet.dead.
 */
import { randomUUID } from 'node:crypto';
import amqp from 'amqplib';

export interface BusMessage {
  routingKey: string;
  envelope: { version: number; kind: string; id: string; sent_at: string; body: Record<string, unknown> };
  headers: Record<string, unknown>;
}

export interface DeadLetter {
  routingKey: string;
  content: Buffer;
  headers: Record<string, unknown>;
}

export class BusClient {
  readonly events: BusMessage[] = [];
  readonly scheduler: BusMessage[] = [];
  #waiters: (() => void)[] = [];

  private constructor(
    private readonly model: amqp.ChannelModel,
    private readonly channel: amqp.ConfirmChannel,
    private readonly replyQueue: string,
    private readonly replies: Map<string, (m: BusMessage) => void>,
  ) {}

  /** Connects and follows every event and report; `scheduler: true` also takes what is sent to the schedulers (reschedules). */
  static async connect(url: string, options: { scheduler?: boolean } = {}): Promise<BusClient> {
    const model = await amqp.connect(url);
    const channel = await model.createConfirmChannel();
    await channel.assertExchange('novalet', 'topic', { durable: true });
    await channel.assertExchange('novalet.events', 'topic', { durable: true });
    const events = await channel.assertQueue('', { exclusive: true, autoDelete: true });
    await channel.bindQueue(events.queue, 'novalet.events', '#');
    const replies = await channel.assertQueue('', { exclusive: true, autoDelete: true });
    const client = new BusClient(model, channel, replies.queue, new Map());
    const parse = (m: amqp.ConsumeMessage): BusMessage => ({ routingKey: m.fields.routingKey, envelope: JSON.parse(m.content.toString('utf8')), headers: m.properties.headers ?? {} });
    await channel.consume(events.queue, (m) => {
      if (!m) return;
      client.events.push(parse(m));
      client.#wake();
    }, { noAck: true });
    await channel.consume(replies.queue, (m) => {
      if (!m) return;
      client.replies.get(m.properties.correlationId as string)?.(parse(m));
    }, { noAck: true });
    if (options.scheduler) {
      // A queue of the test's own bound like novalet.scheduler, so that no scheduler's queue is needed.
      const q = await channel.assertQueue('', { exclusive: true, autoDelete: true });
      await channel.bindQueue(q.queue, 'novalet', 'scheduler');
      await channel.consume(q.queue, (m) => {
        if (!m) return;
        client.scheduler.push(parse(m));
        client.#wake();
      }, { noAck: true });
    }
    return client;
  }

  #wake(): void {
    for (const w of this.#waiters.splice(0)) w();
  }

  /** Publishes raw bytes to compute.<host>, persistent, as any client would. */
  async sendRaw(host: string, content: Buffer, properties: amqp.Options.Publish = {}): Promise<void> {
    this.channel.publish('novalet', `compute.${host}`, content, { contentType: 'application/json', deliveryMode: 2, ...properties });
    await this.channel.waitForConfirms();
  }

  /** Sends a request; returns its envelope id. */
  async send(host: string, kind: string, body: unknown, id: string = randomUUID()): Promise<string> {
    await this.sendRaw(host, Buffer.from(JSON.stringify({ version: 1, kind, id, sent_at: new Date().toISOString(), body })), { messageId: id });
    return id;
  }

  /** A call: the reply's envelope body. */
  async call(host: string, kind: string, body: unknown, timeoutMs = 15_000): Promise<{ ok: boolean; result?: unknown; error?: { code: string; message: string; remedy: string } }> {
    return (await this.callEnvelope(host, kind, body, randomUUID(), timeoutMs)).envelope.body as never;
  }

  /** A call under envelope id `id` (the same id twice is a redelivery, as the broker makes one); the whole reply. */
  async callEnvelope(host: string, kind: string, body: unknown, id: string, timeoutMs = 15_000): Promise<BusMessage> {
    const correlationId = randomUUID();
    const reply = new Promise<BusMessage>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no reply to ${kind} in ${timeoutMs} ms`)), timeoutMs);
      this.replies.set(correlationId, (m) => {
        clearTimeout(timer);
        resolve(m);
      });
    });
    this.channel.publish('novalet', `compute.${host}`, Buffer.from(JSON.stringify({ version: 1, kind, id, sent_at: new Date().toISOString(), body })), {
      contentType: 'application/json',
      deliveryMode: 2,
      replyTo: this.replyQueue,
      correlationId,
      messageId: id,
    });
    await this.channel.waitForConfirms();
    const m = await reply;
    expectKind(m, 'reply');
    return m;
  }

  /** The `list` call's instances. */
  async list(host: string): Promise<{ uuid: string; state: string; name: string }[]> {
    const reply = await this.call(host, 'list', {});
    if (!reply.ok) throw new Error(`list failed: ${JSON.stringify(reply.error)}`);
    return (reply.result as { instances: { uuid: string; state: string; name: string }[] }).instances;
  }

  /** Waits until `check` finds what it wants among what arrived. */
  async waitFor<T>(what: string, check: () => T | undefined | false, timeoutMs = 30_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = check();
      if (found !== undefined && found !== false) return found;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}; events so far: ${this.events.map((e) => e.routingKey).join(', ')}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 250));
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  eventsOf(uuid: string): string[] {
    return this.events.filter((e) => e.routingKey.startsWith(`instance.${uuid}.`)).map((e) => e.routingKey.slice(`instance.${uuid}.`.length));
  }

  waitForEvent(uuid: string, event: string, timeoutMs = 30_000): Promise<BusMessage> {
    return this.waitFor(`instance.${uuid}.${event}`, () => this.events.find((e) => e.routingKey === `instance.${uuid}.${event}`), timeoutMs);
  }

  reports(host: string): BusMessage[] {
    return this.events.filter((e) => e.routingKey === `host.${host}.report`);
  }

  /** Takes everything now in novalet.dead. */
  async takeDeadLetters(): Promise<DeadLetter[]> {
    const taken: DeadLetter[] = [];
    for (;;) {
      const m = await this.channel.get('novalet.dead', { noAck: true });
      if (!m) return taken;
      taken.push({ routingKey: m.fields.routingKey, content: m.content, headers: m.properties.headers ?? {} });
    }
  }

  /** How many messages wait in a queue (declared passively: the service made it). */
  async depth(queue: string): Promise<number> {
    return (await this.channel.checkQueue(queue)).messageCount;
  }

  async close(): Promise<void> {
    await this.model.close().catch(() => undefined);
  }
}

function expectKind(m: BusMessage, kind: string): void {
  if (m.envelope.kind !== kind) throw new Error(`expected a ${kind}, got ${m.envelope.kind}`);
}
