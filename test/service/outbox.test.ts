/**
 * The outbox's own logic (service/outbox.ts) with a publisher the test
 * scripts: order per stream under retries, nothing lost or doubled across a
 * restart, held messages confirmed back to their owner, unroutable ones
 * dead-lettered, unreadable entries moved aside, a full disk (a real tmpfs).
 * The same against a real RabbitMQ, an outage and a restart included, is
 * test/service/outbox-broker.test.ts.
 */
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { NovaletError } from '../../config/novalet-error.js';
import { Outbox, type OutboxMessage, type OutboxPublisher } from '../../service/outbox.js';
import { capturedLogger } from '../support/captured-logger.js';
import { mountSmallFileSystem, type SmallFileSystem } from '../support/small-filesystem.js';

const dirs: string[] = [];
const mounts: SmallFileSystem[] = [];
const boxes: Outbox[] = [];
afterEach(async () => {
  for (const box of boxes.splice(0)) await box.stop();
  for (const m of mounts.splice(0)) m.unmount();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'nvl-outbox-'));
  dirs.push(dir);
  return dir;
}

let n = 0;
function message(stream: string, extra: Partial<OutboxMessage> = {}): OutboxMessage {
  n += 1;
  return { id: `00000000-0000-4000-8000-${n.toString().padStart(12, '0')}`, exchange: 'novalet.events', routingKey: `instance.${stream}.e${n}`, content: `{"n":${n}}`, mandatory: false, stream, at: n, ...extra };
}

/** A publisher whose broker is up or down, as the test says; it records what it confirmed, in order. */
class ScriptedPublisher implements OutboxPublisher {
  up = true;
  readonly confirmed: string[] = [];
  readonly deadLettered: string[] = [];
  readonly unroutableKeys = new Set<string>();
  failNext = 0;

  async publish(m: OutboxMessage): Promise<void> {
    await new Promise((resolve) => setTimeout(resolve, 1));
    if (!this.up || this.failNext > 0) {
      this.failNext = Math.max(0, this.failNext - 1);
      throw new NovaletError('BROKER_PUBLISH_FAILED', 'no broker');
    }
    if (m.mandatory && this.unroutableKeys.has(m.routingKey)) throw new NovaletError('MESSAGE_UNROUTABLE', `nobody takes ${m.routingKey}`);
    this.confirmed.push(m.id);
  }

  async unroutable(m: OutboxMessage): Promise<void> {
    if (!this.up) throw new NovaletError('BROKER_PUBLISH_FAILED', 'no broker');
    this.deadLettered.push(m.id);
  }
}

function outbox(dir: string, publisher: OutboxPublisher): Outbox {
  const box = new Outbox({ dir, publisher, log: capturedLogger().log, firstRetryMs: 5, maxRetryMs: 20 });
  boxes.push(box);
  return box;
}

const waitFor = async (what: string, ok: () => boolean): Promise<void> => {
  for (let i = 0; i < 2000 && !ok(); i++) await new Promise((resolve) => setTimeout(resolve, 5));
  if (!ok()) throw new Error(`never: ${what}`);
};

describe('Outbox', () => {
  it('keeps each message on disk until confirmed, then forgets it; an id pending already is not added twice', async () => {
    const dir = tempDir();
    const publisher = new ScriptedPublisher();
    publisher.up = false;
    const box = outbox(dir, publisher);
    box.start();
    const a = message('i1');
    await box.add([a]);
    await box.add([a]);
    expect(readdirSync(dir).filter((f) => f.endsWith('.json'))).toHaveLength(1);
    expect(box.pending).toBe(1);
    publisher.up = true;
    await box.drained();
    expect(publisher.confirmed).toEqual([a.id]);
    expect(readdirSync(dir).filter((f) => f.endsWith('.json'))).toEqual([]);
  });

  it('publishes one stream in order, one at a time, even when the first publish fails; other streams go alongside', async () => {
    const publisher = new ScriptedPublisher();
    const box = outbox(tempDir(), publisher);
    publisher.failNext = 3;
    const first = [message('a'), message('a'), message('a')];
    const other = message('b');
    box.start();
    await box.add(first);
    await box.add([other]);
    await box.drained();
    const order = publisher.confirmed.filter((id) => first.some((m) => m.id === id));
    expect(order).toEqual(first.map((m) => m.id));
    expect(publisher.confirmed).toContain(other.id);
  });

  it('a retryNow() while a confirmed message is being forgotten does not publish it again (one publish of a stream at a time)', async () => {
    const publisher = new ScriptedPublisher();
    const box = outbox(tempDir(), publisher);
    const [a, b] = [message('s'), message('s')];
    const publish = publisher.publish.bind(publisher);
    publisher.publish = async (m) => {
      await publish(m);
      // The broker says "connected" just as the confirm arrives: retryNow() lands while the outbox removes a's file.
      if (m.id === a.id) setImmediate(() => box.retryNow());
    };
    box.start();
    await box.add([a, b]);
    await box.drained();
    expect(publisher.confirmed).toEqual([a.id, b.id]);
  });

  it('what was not confirmed before a stop is published by the next outbox on the same folder, with the same ids', async () => {
    const dir = tempDir();
    const down = new ScriptedPublisher();
    down.up = false;
    const before = outbox(dir, down);
    before.start();
    const messages = [message('x'), message('x'), message('y')];
    await before.add(messages);
    await before.stop();
    const up = new ScriptedPublisher();
    const after = outbox(dir, up);
    expect(await after.load()).toEqual({ loaded: 3, unreadable: [] });
    after.start();
    await after.drained();
    expect(up.confirmed.filter((id) => id !== messages[2]!.id)).toEqual([messages[0]!.id, messages[1]!.id]);
    expect(new Set(up.confirmed)).toEqual(new Set(messages.map((m) => m.id)));
  });

  it('retryNow() (the broker is back) publishes what waits for its retry at once, not after its backoff', async () => {
    const publisher = new ScriptedPublisher();
    publisher.up = false;
    const box = new Outbox({ dir: tempDir(), publisher, log: capturedLogger().log, firstRetryMs: 600_000, maxRetryMs: 600_000 });
    boxes.push(box);
    box.start();
    const m = message('back');
    await box.add([m]);
    // Let the first attempt fail and its ten-minute retry be set.
    for (let i = 0; i < 100 && box.pending === 1 && publisher.confirmed.length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 5));
    publisher.up = true;
    box.retryNow();
    await box.drained();
    expect(publisher.confirmed).toEqual([m.id]);
  });

  it("after a restart, one stream's messages from its owner's records and from the outbox's folder go out in the order they were made", async () => {
    const dir = tempDir();
    const down = new ScriptedPublisher();
    down.up = false;
    const before = outbox(dir, down);
    const first = message('s');
    const third = message('s');
    await before.add([first, third]);
    await before.stop();
    const up = new ScriptedPublisher();
    const after = outbox(dir, up);
    // Held (from a record) before the folder is read, but made between the two.
    const second = message('s', { at: first.at + 0.5 });
    after.hold([second], () => undefined);
    await after.load();
    after.start();
    await after.drained();
    expect(up.confirmed).toEqual([first.id, second.id, third.id]);
  });

  it('held messages are confirmed back to their owner, who keeps them on disk itself', async () => {
    const publisher = new ScriptedPublisher();
    const dir = tempDir();
    const box = outbox(dir, publisher);
    const confirmed: string[] = [];
    const held = [message('h'), message('h')];
    box.hold(held, (id) => confirmed.push(id));
    box.start();
    await box.drained();
    expect(confirmed).toEqual(held.map((m) => m.id));
    expect(readdirSync(dir)).toEqual([]);
  });

  it('a mandatory message nobody takes is dead-lettered, and a dead-lettering that fails is tried again', async () => {
    const publisher = new ScriptedPublisher();
    const box = outbox(tempDir(), publisher);
    const lost = message('r', { mandatory: true, exchange: 'novalet', routingKey: 'scheduler' });
    publisher.unroutableKeys.add('scheduler');
    const flaky = publisher.unroutable.bind(publisher);
    let failures = 1;
    publisher.unroutable = async (m) => {
      if (failures-- > 0) throw new NovaletError('BROKER_PUBLISH_FAILED', 'dead-letter not confirmed');
      return flaky(m);
    };
    box.start();
    await box.add([lost]);
    await box.drained();
    expect(publisher.deadLettered).toEqual([lost.id]);
    expect(publisher.confirmed).toEqual([]);
  });

  it('an unreadable entry is moved aside and named; the others are loaded', async () => {
    const dir = tempDir();
    writeFileSync(path.join(dir, '000000000000001-000000001-bad.json'), '{"id": ');
    writeFileSync(path.join(dir, '000000000000002-000000002-x.json.1.tmp'), 'half');
    writeFileSync(path.join(dir, '000000000000003-000000003-ok.json'), JSON.stringify(message('ok')));
    const captured = capturedLogger();
    const box = new Outbox({ dir, publisher: new ScriptedPublisher(), log: captured.log });
    boxes.push(box);
    const loaded = await box.load();
    expect(loaded.loaded).toBe(1);
    expect(loaded.unreadable).toHaveLength(1);
    expect(loaded.unreadable[0]).toContain(path.join(dir, 'unreadable', '000000000000001-000000001-bad.json.'));
    expect(captured.lines.some((l) => l.level === 50 && String(l.msg).includes('moved aside'))).toBe(true);
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('on a full disk, add() publishes at once and resolves only once the broker confirmed; it rejects when it cannot', async () => {
    const fs = mountSmallFileSystem(256);
    mounts.push(fs);
    const publisher = new ScriptedPublisher();
    const box = outbox(fs.dir, publisher);
    box.start();
    fs.fill();
    const m = message('full');
    await box.add([m]);
    expect(publisher.confirmed).toEqual([m.id]);
    expect(readdirSync(fs.dir).filter((f) => f !== 'filler')).toEqual([]);
    publisher.up = false;
    await expect(box.add([message('full')])).rejects.toThrow('no broker');
    expect(box.pending).toBe(0);
  });
});
