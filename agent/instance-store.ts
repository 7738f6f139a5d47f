/**
 * Instance records: an index in memory, one JSON file each on disk under
 * `<state_path>/instances.d`. Read once at start, written through: every
 * change is written atomically and durably (service/durable-file.ts) before
 * it is seen in memory, so lists, claims and reports never read the disk.
 *
 * A record carries the events that report its last changes until the broker
 * confirmed them (`outbox`): they are written in the same atomic write as the
 * state they report, handed to the outbox to publish, and dropped from the
 * record once confirmed (the file catching up lazily; a restart in between
 * publishes them again, with the same ids).
 *
 * A file that cannot be read is moved aside (named in the log, the metric and
 * /healthz), never a reason to stop serving the others. Records of deleted
 * and handed-back instances are purged after `[compute] deleted_record_retention`.
 */
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { isDiskFull } from '../config/disk-full.js';
import type { Logger } from '../config/logger.js';
import { ensureFolder, moveAside, removeFile, sweepTemporaryFiles, writeFileDurably } from '../service/durable-file.js';
import type { OutboxMessage } from '../service/outbox.js';
import type { InstanceRecord } from './instance-record.js';

/** How long a confirmed event may linger in its record's file before the file is rewritten without it. */
const CONFIRM_FLUSH_MS = 1000;
const UUID_FILE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.json$/;

export interface UnreadableRecord {
  file: string;
  movedTo: string;
  reason: string;
}

export interface StoreLoad {
  loaded: number;
  unreadable: UnreadableRecord[];
  /** Temporary files a crash left, removed. */
  swept: string[];
}

/** Gone from this host: deleted, or its build handed back to the schedulers. */
export function isGone(record: InstanceRecord): boolean {
  return record.state === 'deleted' || Boolean(record.origin?.rescheduledAt);
}

function problemOf(text: string, file: string): { record: InstanceRecord } | { reason: string } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return { reason: 'it is not valid JSON' };
  }
  const r = parsed as Partial<InstanceRecord> | null;
  if (typeof r !== 'object' || r === null || Array.isArray(r)) return { reason: 'it is not a JSON object' };
  if (typeof r.uuid !== 'string' || `${r.uuid}.json` !== file) return { reason: 'its uuid is not the one its name says' };
  if (typeof r.state !== 'string' || typeof r.flavor !== 'object' || r.flavor === null || typeof r.updatedAt !== 'string') {
    return { reason: 'it lacks state, flavor or updatedAt' };
  }
  if (r.outbox !== undefined && !Array.isArray(r.outbox)) return { reason: 'its outbox is not a list' };
  return { record: r as InstanceRecord };
}

export class InstanceStore {
  readonly #records = new Map<string, InstanceRecord>();
  readonly #writes = new Map<string, Promise<unknown>>();
  readonly #flushes = new Map<string, NodeJS.Timeout>();
  readonly #unreadable: UnreadableRecord[] = [];
  /** Set while writes fail for a full disk (the service says it is degraded), cleared by the next write that succeeds. */
  diskFull: { at: string; message: string } | null = null;
  /** Told of every record's new pending messages once they are on disk (the outbox publishes them). */
  onPending: (uuid: string, messages: OutboxMessage[]) => void = () => undefined;

  constructor(
    readonly dir: string,
    private readonly log: Logger,
  ) {}

  /** Reads every record (once, at start). */
  async load(): Promise<StoreLoad> {
    await ensureFolder(this.dir);
    const swept = await sweepTemporaryFiles(this.dir);
    if (swept.length > 0) this.log.info({ dir: this.dir, files: swept }, 'temporary files an interrupted write left were removed');
    const names = (await readdir(this.dir)).filter((n) => n.endsWith('.json'));
    const unreadable: UnreadableRecord[] = [];
    for (const name of names) {
      const file = path.join(this.dir, name);
      let outcome: { record: InstanceRecord } | { reason: string };
      try {
        outcome = UUID_FILE.test(name) ? problemOf(await readFile(file, 'utf8'), name) : { reason: 'its name is not <uuid>.json' };
      } catch (err) {
        outcome = { reason: `it cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})` };
      }
      if ('record' in outcome) {
        this.#records.set(outcome.record.uuid, outcome.record);
        continue;
      }
      const movedTo = await moveAside(this.dir, name).catch(() => file);
      const entry = { file, movedTo, reason: outcome.reason };
      this.log.error(entry, `the instance record ${file} is unreadable (${outcome.reason}) and was moved aside to ${movedTo}; the other instances are served`);
      unreadable.push(entry);
    }
    this.#unreadable.push(...unreadable);
    return { loaded: this.#records.size, unreadable, swept };
  }

  /** Records that could not be read at start, moved aside. */
  get unreadable(): readonly UnreadableRecord[] {
    return this.#unreadable;
  }

  get(uuid: string): InstanceRecord | null {
    return this.#records.get(uuid) ?? null;
  }

  list(): InstanceRecord[] {
    return [...this.#records.values()];
  }

  get size(): number {
    return this.#records.size;
  }

  /**
   * Writes `record` (durably, atomically) with `messages` added to its
   * pending events, then makes it the one in memory and hands the messages to
   * the outbox. Writes of one instance happen one at a time, in call order.
   * A full disk rejects with DISK_FULL and changes nothing.
   */
  commit(record: InstanceRecord, messages: readonly OutboxMessage[] = []): Promise<InstanceRecord> {
    return this.#serially(record.uuid, async () => {
      const pending = (this.#records.get(record.uuid)?.outbox ?? []).filter((m) => !messages.some((n) => n.id === m.id));
      const next: InstanceRecord = { ...record };
      const outbox = [...pending, ...messages];
      if (outbox.length > 0) next.outbox = outbox;
      else delete next.outbox;
      try {
        await writeFileDurably(this.dir, `${record.uuid}.json`, `${JSON.stringify(next, null, 2)}\n`, `the record of instance ${record.uuid}`);
      } catch (err) {
        if (isDiskFull(err)) this.diskFull = { at: new Date().toISOString(), message: (err as Error).message };
        throw err;
      }
      this.diskFull = null;
      // Events the broker confirmed while the file was written (confirm() dropped them from memory) stay dropped.
      const stillPending = new Set((this.#records.get(record.uuid)?.outbox ?? []).map((m) => m.id));
      const kept = outbox.filter((m) => messages.includes(m) || stillPending.has(m.id));
      if (kept.length < outbox.length) {
        if (kept.length > 0) next.outbox = kept;
        else delete next.outbox;
        this.#flushSoon(record.uuid);
      }
      this.#records.set(record.uuid, next);
      if (messages.length > 0) this.onPending(record.uuid, [...messages]);
      return next;
    });
  }

  /**
   * A record that could not be written (a full disk): its file is removed —
   * an unlink needs no space — so that a restart does not act on a stale
   * state, and `record` is kept in memory until then.
   */
  dropFile(record: InstanceRecord): Promise<void> {
    return this.#serially(record.uuid, async () => {
      await removeFile(this.dir, `${record.uuid}.json`);
      const { outbox: _unsent, ...kept } = record;
      this.#records.set(record.uuid, kept);
    });
  }

  /** The broker confirmed one of the record's events: it is dropped, and the file rewritten without it soon. */
  confirm(uuid: string, id: string): void {
    const record = this.#records.get(uuid);
    if (!record?.outbox?.some((m) => m.id === id)) return;
    const outbox = record.outbox.filter((m) => m.id !== id);
    const next = { ...record };
    if (outbox.length > 0) next.outbox = outbox;
    else delete next.outbox;
    this.#records.set(uuid, next);
    this.#flushSoon(uuid);
  }

  /** Rewrites the record from memory soon (its confirmed events dropped); one pending rewrite per record. */
  #flushSoon(uuid: string): void {
    if (this.#flushes.has(uuid)) return;
    const timer = setTimeout(() => {
      this.#flushes.delete(uuid);
      void this.#serially(uuid, async () => {
        const current = this.#records.get(uuid);
        if (current) await writeFileDurably(this.dir, `${uuid}.json`, `${JSON.stringify(current, null, 2)}\n`, `the record of instance ${uuid}`);
      }).catch((err: unknown) => this.log.warn({ err, uuid }, 'a record could not be rewritten without its confirmed events; they are published again after a restart (same ids)'));
    }, CONFIRM_FLUSH_MS);
    timer.unref();
    this.#flushes.set(uuid, timer);
  }

  /** Every record's unconfirmed events, for the outbox at start. */
  pending(): { uuid: string; messages: OutboxMessage[] }[] {
    return this.list().filter((r) => (r.outbox?.length ?? 0) > 0).map((r) => ({ uuid: r.uuid, messages: r.outbox! }));
  }

  /** Removes the records of instances gone longer than `retentionMs` with nothing left to publish; their UUIDs. */
  async purge(retentionMs: number, now = Date.now()): Promise<string[]> {
    const due = this.list().filter((r) => isGone(r) && (r.outbox?.length ?? 0) === 0 && now - Date.parse(r.updatedAt) >= retentionMs);
    const purged: string[] = [];
    for (const record of due) {
      await this.#serially(record.uuid, async () => {
        const current = this.#records.get(record.uuid);
        if (!current || current.updatedAt !== record.updatedAt) return;
        await removeFile(this.dir, `${record.uuid}.json`);
        this.#records.delete(record.uuid);
        purged.push(record.uuid);
      });
    }
    return purged;
  }

  /** Waits for the writes under way (tests, shutdown) and writes the pending confirmations now. */
  async settle(): Promise<void> {
    for (const [uuid, timer] of this.#flushes) {
      clearTimeout(timer);
      this.#flushes.delete(uuid);
      // Read inside the serialised work: a commit queued before this one must not be overwritten by an older copy.
      await this.#serially(uuid, async () => {
        const current = this.#records.get(uuid);
        if (current) await writeFileDurably(this.dir, `${uuid}.json`, `${JSON.stringify(current, null, 2)}\n`, `the record of instance ${uuid}`);
      }).catch(() => undefined);
    }
    await Promise.allSettled([...this.#writes.values()]);
  }

  #serially<T>(uuid: string, work: () => Promise<T>): Promise<T> {
    const before = this.#writes.get(uuid) ?? Promise.resolve();
    const mine = before.then(work, work);
    const tail = mine.catch(() => undefined);
    this.#writes.set(uuid, tail);
    void tail.then(() => {
      if (this.#writes.get(uuid) === tail) this.#writes.delete(uuid);
    });
    return mine;
  }
}
