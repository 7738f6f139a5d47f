/**
 * The transactional outbox: messages a service must get to the broker —
 * instance events, reschedules — are kept on disk with the state change they
 * report and published from there, with publisher confirms, across broker
 * outages and restarts, until the broker confirms each. A message keeps its
 * envelope id for ever, so a re-published one is recognisable and consumers
 * drop repeats by id (at least once, never lost).
 *
 * Two kinds of durability feed the one publisher:
 * - `hold()`: messages the caller already wrote durably with its state (the
 *   compute host keeps an instance's pending events in its record, written
 *   in the same atomic write as the state they report); `confirmed` tells the
 *   caller when each may be forgotten;
 * - `add()`: messages kept in the outbox's own folder, one file each.
 *
 * Messages of one stream (an instance's events: its UUID) go out one at a
 * time, in order, even across retries; streams go out side by side. A
 * mandatory message that no queue takes comes back and is handed to
 * `unroutable` (dead-lettered with the reason), never dropped in silence.
 */
import { readdir, readFile } from 'node:fs/promises';
import type { Logger } from '../config/logger.js';
import { isDiskFull } from '../config/disk-full.js';
import { NovaletError } from '../config/novalet-error.js';
import { ensureFolder, moveAside, removeFile, sweepTemporaryFiles, writeFileDurably } from './durable-file.js';

export interface OutboxMessage {
  /** The envelope id, kept for ever. */
  id: string;
  exchange: string;
  routingKey: string;
  /** The encoded envelope, JSON text. */
  content: string;
  /** Published mandatory: one that comes back is dead-lettered with the reason. */
  mandatory: boolean;
  /** Messages of one stream are published in order, one at a time. */
  stream: string;
  /** When it was made (ms since the epoch): after a restart, a stream's messages from the records and from the outbox's folder go out in this order. */
  at: number;
}

export interface OutboxPublisher {
  /** Resolves once the broker confirmed it; rejects MESSAGE_UNROUTABLE when a mandatory one came back. */
  publish(message: OutboxMessage): Promise<void>;
  /** A mandatory message no queue took: dead-letter it with the reason (resolves once that is confirmed). */
  unroutable(message: OutboxMessage, error: NovaletError): Promise<void>;
}

export interface OutboxOptions {
  /** The folder of the outbox's own messages. */
  dir: string;
  publisher: OutboxPublisher;
  log: Logger;
  /** Publishes in flight at once, over all streams. */
  concurrency?: number;
  /** The first retry's wait after a failed publish; doubles up to maxRetryMs. */
  firstRetryMs?: number;
  maxRetryMs?: number;
  /** Told after each confirmed publish. */
  published?: () => void;
}

interface Entry {
  message: OutboxMessage;
  /** The file in the outbox's folder, for `add()`ed messages. */
  file: string | null;
  confirmed: ((id: string) => void) | null;
  since: number;
  attempts: number;
}

let sequence = 0;
/** How long stop() waits for the publishes under way. */
const STOP_WAIT_MS = 5000;

/** File names that sort in the order messages were added, across restarts. */
function fileName(id: string): string {
  return `${Date.now().toString().padStart(15, '0')}-${(++sequence).toString().padStart(9, '0')}-${id}.json`;
}

function isOutboxMessage(value: unknown): value is OutboxMessage {
  const m = value as OutboxMessage | null;
  return (
    typeof m === 'object' && m !== null &&
    typeof m.id === 'string' && typeof m.exchange === 'string' && typeof m.routingKey === 'string' &&
    typeof m.content === 'string' && typeof m.mandatory === 'boolean' && typeof m.stream === 'string' && typeof m.at === 'number'
  );
}

export class Outbox {
  readonly #options: Required<Omit<OutboxOptions, 'published'>> & Pick<OutboxOptions, 'published'>;
  readonly #streams = new Map<string, Entry[]>();
  readonly #byId = new Map<string, Entry>();
  /** Streams whose head is being published or waits for its retry. */
  readonly #busy = new Set<string>();
  /** Streams whose head is being published right now. */
  readonly #publishing = new Set<string>();
  readonly #timers = new Set<NodeJS.Timeout>();
  readonly #inFlight = new Set<Promise<void>>();
  #running = false;
  #idle: { promise: Promise<void>; resolve: () => void } | null = null;

  constructor(options: OutboxOptions) {
    this.#options = { concurrency: 16, firstRetryMs: 500, maxRetryMs: 30_000, ...options };
  }

  /** Messages not yet confirmed. */
  get pending(): number {
    return this.#byId.size;
  }

  /** Seconds the oldest unconfirmed message has waited (0 when none). */
  oldestAgeSeconds(now = Date.now()): number {
    let oldest = now;
    for (const entries of this.#streams.values()) if (entries[0] && entries[0].since < oldest) oldest = entries[0].since;
    return (now - oldest) / 1000;
  }

  has(id: string): boolean {
    return this.#byId.has(id);
  }

  /** Reads the outbox's folder (once, at start): its messages are queued again; an unreadable file is moved aside and named. */
  async load(): Promise<{ loaded: number; unreadable: string[] }> {
    const { dir, log } = this.#options;
    await ensureFolder(dir);
    await sweepTemporaryFiles(dir);
    const names = (await readdir(dir)).filter((n) => n.endsWith('.json')).sort();
    const unreadable: string[] = [];
    let loaded = 0;
    for (const name of names) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(await readFile(`${dir}/${name}`, 'utf8'));
      } catch {
        parsed = null;
      }
      if (!isOutboxMessage(parsed)) {
        const where = await moveAside(dir, name);
        log.error({ file: `${dir}/${name}`, moved_to: where }, `an outbox entry is not readable and was moved aside to ${where}; its message is not sent`);
        unreadable.push(where);
        continue;
      }
      if (this.#enqueue(parsed, name, null)) loaded += 1;
    }
    return { loaded, unreadable };
  }

  /**
   * Keeps `messages` in the outbox's folder (each fsynced) and queues them;
   * resolves once they are on disk. On a full disk they are published at
   * once instead and this resolves once the broker confirmed them, so that
   * the caller's request is still answered before it is acknowledged.
   * A message whose id is pending already is not added twice.
   */
  async add(messages: readonly OutboxMessage[]): Promise<void> {
    const fresh = messages.filter((m) => !this.#byId.has(m.id));
    const written: { message: OutboxMessage; name: string }[] = [];
    try {
      for (const message of fresh) {
        const name = fileName(message.id);
        await writeFileDurably(this.#options.dir, name, JSON.stringify(message), `an outbox entry (${message.routingKey})`);
        written.push({ message, name });
      }
    } catch (err) {
      if (!isDiskFull(err)) {
        await Promise.all(written.map(({ name }) => removeFile(this.#options.dir, name).catch(() => undefined)));
        throw new NovaletError('OUTBOX_WRITE_FAILED', `The outbox folder ${this.#options.dir} cannot be written: ${(err as Error).message}.`, 'Check the folder and its file system; the request is handed back to the broker.');
      }
      this.#options.log.warn({ dir: this.#options.dir }, 'the outbox cannot keep messages on disk (the file system is full): they are published at once and the request is answered only once the broker confirmed them');
      for (const { message, name } of written) this.#enqueue(message, name, null);
      for (const message of fresh.slice(written.length)) await this.#publishNow(message);
      return;
    }
    for (const { message, name } of written) this.#enqueue(message, name, null);
  }

  /** Queues messages the caller keeps on disk itself; `confirmed(id)` once each is confirmed (or dead-lettered as unroutable). */
  hold(messages: readonly OutboxMessage[], confirmed: (id: string) => void): void {
    for (const message of messages) this.#enqueue(message, null, confirmed);
  }

  /** Starts publishing (and goes on until stop()). What was loaded or held before goes out in the order it was made, stream by stream. */
  start(): void {
    for (const entries of this.#streams.values()) entries.sort((a, b) => a.message.at - b.message.at);
    this.#running = true;
    this.#pump();
  }

  /** The broker is back: messages waiting for their retry are published now rather than after their backoff. */
  retryNow(): void {
    if (!this.#running) return;
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
    for (const stream of [...this.#busy]) if (!this.#publishing.has(stream)) this.#busy.delete(stream);
    this.#pump();
  }

  /** Stops publishing: waits (at most `waitMs`) for the publishes under way; what is unconfirmed stays on disk for the next start. */
  async stop(waitMs = STOP_WAIT_MS): Promise<void> {
    this.#running = false;
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
    // Bounded: with the broker away a publish waits for it; what is not confirmed is on disk and goes out at the next start, same id.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.allSettled([...this.#inFlight]), new Promise((resolve) => (timer = setTimeout(resolve, waitMs)))]);
    clearTimeout(timer);
  }

  /** Resolves once nothing is pending (tests and benchmarks). */
  drained(): Promise<void> {
    if (this.#byId.size === 0) return Promise.resolve();
    if (!this.#idle) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      this.#idle = { promise, resolve };
    }
    return this.#idle.promise;
  }

  #enqueue(message: OutboxMessage, file: string | null, confirmed: ((id: string) => void) | null): boolean {
    if (this.#byId.has(message.id)) return false;
    const entry: Entry = { message, file, confirmed, since: Date.now(), attempts: 0 };
    this.#byId.set(message.id, entry);
    const queue = this.#streams.get(message.stream);
    if (queue) queue.push(entry);
    else this.#streams.set(message.stream, [entry]);
    this.#pump();
    return true;
  }

  #pump(): void {
    if (!this.#running) return;
    for (const [stream, entries] of this.#streams) {
      if (this.#inFlight.size >= this.#options.concurrency) return;
      if (this.#busy.has(stream) || entries.length === 0) continue;
      this.#busy.add(stream);
      const attempt = this.#attempt(stream, entries[0]!);
      this.#inFlight.add(attempt);
      void attempt.finally(() => {
        this.#inFlight.delete(attempt);
        this.#pump();
      });
    }
  }

  async #attempt(stream: string, entry: Entry): Promise<void> {
    const { log } = this.#options;
    this.#publishing.add(stream);
    try {
      await this.#publishNow(entry.message);
    } catch (err) {
      this.#publishing.delete(stream);
      entry.attempts += 1;
      const wait = Math.min(this.#options.maxRetryMs, this.#options.firstRetryMs * 2 ** Math.min(entry.attempts - 1, 16));
      // Once per outage is enough in the log: the first failure, then every tenth.
      if (entry.attempts === 1 || entry.attempts % 10 === 0) {
        log.warn({ id: entry.message.id, routing_key: entry.message.routingKey, attempts: entry.attempts, retry_in_ms: wait, err: (err as Error).message }, 'a message was not confirmed by the broker: it stays in the outbox and is published again');
      }
      if (!this.#running) {
        this.#busy.delete(stream);
        return;
      }
      const timer = setTimeout(() => {
        this.#timers.delete(timer);
        this.#busy.delete(stream);
        this.#pump();
      }, wait);
      this.#timers.add(timer);
      return;
    }
    try {
      await this.#forget(stream, entry);
    } finally {
      // Only now: a retryNow() meanwhile must not start the stream's next publish while this one is still being forgotten.
      this.#publishing.delete(stream);
      this.#busy.delete(stream);
    }
  }

  /** Publishes one message; a mandatory one that came back is dead-lettered instead. Rejects when neither was confirmed. */
  async #publishNow(message: OutboxMessage): Promise<void> {
    const { publisher } = this.#options;
    try {
      await publisher.publish(message);
    } catch (err) {
      if (!(err instanceof NovaletError) || err.code !== 'MESSAGE_UNROUTABLE') throw err;
      this.#options.log.error({ id: message.id, exchange: message.exchange, routing_key: message.routingKey }, `a message nobody could receive was moved to novalet.dead: ${err.message}`);
      await publisher.unroutable(message, err);
    }
  }

  async #forget(stream: string, entry: Entry): Promise<void> {
    const entries = this.#streams.get(stream);
    if (entries?.[0] === entry) entries.shift();
    if (entries && entries.length === 0) this.#streams.delete(stream);
    this.#byId.delete(entry.message.id);
    this.#options.published?.();
    if (entry.file) {
      await removeFile(this.#options.dir, entry.file).catch((err: unknown) => this.#options.log.warn({ err, file: entry.file }, 'a published outbox entry could not be removed; it will be published again after a restart (same id)'));
    }
    try {
      entry.confirmed?.(entry.message.id);
    } catch (err) {
      this.#options.log.error({ err }, 'the confirmation of an outbox message failed');
    }
    if (this.#byId.size === 0 && this.#idle) {
      this.#idle.resolve();
      this.#idle = null;
    }
  }
}
