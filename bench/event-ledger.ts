/**
 * The books of a durability benchmark: every request it sends to a compute
 * host (build, delete, stop, start) and every instance event that arrives on
 * `novalet.events`, so that each request can be matched with its answer by
 * id. An answer's envelope id is derived from the request's own id
 * (service/message-ids.ts `answerId(request id, event name)`), so the ledger
 * knows the id each answer must carry before it comes:
 *
 * - lost: a request no answer came for;
 * - a repeat under the same id: the same event again (at least once: allowed,
 *   consumers drop it by id);
 * - a repeat without the same id: an instance's terminal event (create.end,
 *   delete.end, power.off, …) whose id no request of the instance derives —
 *   what a consumer could not recognise as a repeat (nothing in these
 *   scenarios happens unasked: no guest crashes);
 * - a contradiction: one request answered two different ways (create.end
 *   and create.error).
 *
 * Events are taken from a durable queue of the ledger's own, acknowledged
 * once recorded, so that what the agent publishes while the ledger is
 * disconnected (the broker down, then back) waits for it there.
 */
import { randomUUID } from 'node:crypto';
import amqp from 'amqplib';
import { answerId } from '../service/message-ids.js';

export type RequestKind = 'build' | 'delete' | 'stop' | 'start';

/** The events that answer each kind of request: the first is success. */
export const ANSWERS: Record<RequestKind, readonly string[]> = {
  build: ['create.end', 'create.error'],
  delete: ['delete.end', 'action.error'],
  stop: ['power.off', 'action.error'],
  start: ['power.on', 'action.error'],
};
const TERMINAL = new Set(Object.values(ANSWERS).flat());

export interface SentRequest {
  /** The run it belongs to, e.g. `a/7`. */
  run: string;
  kind: RequestKind;
  uuid: string;
  /** Its envelope id. */
  id: string;
  sentAt: number;
}

export interface Arrival {
  id: string;
  routingKey: string;
  uuid: string;
  event: string;
  /** performance.now() when it arrived. */
  at: number;
  body: Record<string, unknown>;
}

export interface Audit {
  requests: number;
  lost: SentRequest[];
  /** By answer event: how the requests were answered. */
  outcomes: Record<string, number>;
  repeatsSameId: number;
  repeatsOtherId: Arrival[];
  contradictions: { request: SentRequest; events: string[] }[];
}

export class EventLedger {
  readonly requests: SentRequest[] = [];
  readonly arrivals: Arrival[] = [];
  /** Arrivals by envelope id (the first of each). */
  readonly #byId = new Map<string, Arrival>();
  /** How many arrivals repeated an id already seen. */
  #repeats = new Map<string, number>();
  readonly #queue: string;
  #model: amqp.ChannelModel | null = null;
  #channel: amqp.ConfirmChannel | null = null;

  private constructor(private readonly url: string) {
    this.#queue = `bench-ledger-${randomUUID().slice(0, 8)}`;
  }

  /** Connects and follows every instance event through a durable queue of its own. */
  static async open(url: string): Promise<EventLedger> {
    const ledger = new EventLedger(url);
    await ledger.resume();
    return ledger;
  }

  /** (Re)connects: the queue kept what came meanwhile. */
  async resume(): Promise<void> {
    const model = await amqp.connect(this.url);
    const channel = await model.createConfirmChannel();
    // An error on the channel (never expected) must not take the benchmark down unseen.
    model.on('error', (err: unknown) => console.error(`ledger connection: ${String(err)}`));
    await channel.assertExchange('novalet', 'topic', { durable: true });
    await channel.assertExchange('novalet.events', 'topic', { durable: true });
    await channel.assertQueue(this.#queue, { durable: true });
    await channel.bindQueue(this.#queue, 'novalet.events', 'instance.#');
    await channel.prefetch(500);
    await channel.consume(this.#queue, (m) => {
      if (!m) return;
      this.#record(m);
      channel.ack(m);
    });
    this.#model = model;
    this.#channel = channel;
  }

  /** Disconnects (before the broker goes down); resume() later. */
  async pause(): Promise<void> {
    const model = this.#model;
    this.#model = null;
    this.#channel = null;
    await model?.close().catch(() => undefined);
  }

  /** How many messages wait in a queue (declared passively, on a channel of its own: a missing queue closes it). */
  async depth(queue: string): Promise<number> {
    if (!this.#model) throw new Error('the ledger is disconnected');
    const channel = await this.#model.createChannel();
    channel.on('error', () => undefined);
    try {
      return (await channel.checkQueue(queue)).messageCount;
    } finally {
      await channel.close().catch(() => undefined);
    }
  }

  /** Deletes its queue and disconnects. */
  async close(): Promise<void> {
    await this.#channel?.deleteQueue(this.#queue).catch(() => undefined);
    await this.pause();
  }

  #record(m: amqp.ConsumeMessage): void {
    const [, uuid = '', ...rest] = m.fields.routingKey.split('.');
    const envelope = JSON.parse(m.content.toString('utf8')) as { id: string; body: Record<string, unknown> };
    const arrival: Arrival = { id: envelope.id, routingKey: m.fields.routingKey, uuid, event: rest.join('.'), at: performance.now(), body: envelope.body };
    const seen = this.#byId.get(arrival.id);
    // The ledger's own redelivery (its connection closed before its ack got through) is not the agent's repeat.
    if (seen && m.fields.redelivered && seen.routingKey === arrival.routingKey) return;
    this.arrivals.push(arrival);
    if (seen) this.#repeats.set(arrival.id, (this.#repeats.get(arrival.id) ?? 0) + 1);
    else this.#byId.set(arrival.id, arrival);
  }

  /** Sends a request to compute.<host> as a client would (persistent, confirmed) and books it. */
  async send(run: string, host: string, kind: RequestKind, uuid: string, body: unknown): Promise<SentRequest> {
    const channel = this.#channel;
    if (!channel) throw new Error('the ledger is disconnected');
    const id = randomUUID();
    const request: SentRequest = { run, kind, uuid, id, sentAt: performance.now() };
    this.requests.push(request);
    channel.publish('novalet', `compute.${host}`, Buffer.from(JSON.stringify({ version: 1, kind, id, sent_at: new Date().toISOString(), body })), {
      contentType: 'application/json',
      deliveryMode: 2,
      messageId: id,
    });
    await channel.waitForConfirms();
    return request;
  }

  /** The answers that came for a request, in order (each id once). */
  answersOf(request: SentRequest): Arrival[] {
    return ANSWERS[request.kind].map((event) => this.#byId.get(answerId(request.id, event))).filter((a): a is Arrival => a !== undefined);
  }

  answered(request: SentRequest): boolean {
    return this.answersOf(request).length > 0;
  }

  /** True once every one of `requests` is answered. */
  allAnswered(requests: readonly SentRequest[]): boolean {
    return requests.every((r) => this.answered(r));
  }

  /** The first arrival of `event` for an instance after `since`. */
  eventOf(uuid: string, event: string, since = 0): Arrival | undefined {
    return this.arrivals.find((a) => a.uuid === uuid && a.event === event && a.at >= since);
  }

  /** The books for `requests` (a run, a scenario): see the module's comment. */
  audit(requests: readonly SentRequest[]): Audit {
    const audit: Audit = { requests: requests.length, lost: [], outcomes: {}, repeatsSameId: 0, repeatsOtherId: [], contradictions: [] };
    const uuids = new Set(requests.map((r) => r.uuid));
    const expected = new Set<string>();
    // Every answer id any request of these instances may get (the ledger's whole books: a later run's request may answer for an instance too).
    for (const r of this.requests) if (uuids.has(r.uuid)) for (const event of ANSWERS[r.kind]) expected.add(answerId(r.id, event));
    for (const request of requests) {
      const answers = this.answersOf(request);
      if (answers.length === 0) audit.lost.push(request);
      for (const a of answers) audit.outcomes[a.event] = (audit.outcomes[a.event] ?? 0) + 1;
      if (answers.length > 1) audit.contradictions.push({ request, events: answers.map((a) => a.event) });
      for (const event of ANSWERS[request.kind]) audit.repeatsSameId += this.#repeats.get(answerId(request.id, event)) ?? 0;
    }
    for (const a of this.arrivals) {
      if (uuids.has(a.uuid) && TERMINAL.has(a.event) && !expected.has(a.id)) audit.repeatsOtherId.push(a);
    }
    return audit;
  }
}

/** Audits added up (runs into a scenario). */
export function sumAudits(audits: readonly Audit[]): Audit {
  const total: Audit = { requests: 0, lost: [], outcomes: {}, repeatsSameId: 0, repeatsOtherId: [], contradictions: [] };
  for (const a of audits) {
    total.requests += a.requests;
    total.lost.push(...a.lost);
    for (const [k, v] of Object.entries(a.outcomes)) total.outcomes[k] = (total.outcomes[k] ?? 0) + v;
    total.repeatsSameId += a.repeatsSameId;
    total.repeatsOtherId.push(...a.repeatsOtherId);
    total.contradictions.push(...a.contradictions);
  }
  return total;
}
