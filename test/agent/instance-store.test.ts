/**
 * Instance records (agent/instance-store.ts): read once, written through,
 * their pending events kept with them until confirmed, an unreadable file
 * moved aside without stopping the others, deleted records purged after
 * their retention, and a full disk (a real tmpfs) refused whole.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { InstanceRecord } from '../../agent/instance-record.js';
import { InstanceStore } from '../../agent/instance-store.js';
import type { OutboxMessage } from '../../service/outbox.js';
import { capturedLogger } from '../support/captured-logger.js';
import { mountSmallFileSystem, type SmallFileSystem } from '../support/small-filesystem.js';

const dirs: string[] = [];
const mounts: SmallFileSystem[] = [];
afterEach(() => {
  for (const m of mounts.splice(0)) m.unmount();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'nvl-store-'));
  dirs.push(dir);
  return dir;
}

let n = 0;
function record(extra: Partial<InstanceRecord> = {}): InstanceRecord {
  n += 1;
  const uuid = `0b6c8f3e-2a4d-4c1e-9f00-${n.toString().padStart(12, '0')}`;
  const now = new Date().toISOString();
  return { uuid, name: `vm-${n}`, host: 'h', state: 'active', task: null, flavor: { vcpus: 1, memoryMiB: 256 }, image: null, kernel: null, virtType: 'qemu', virtTypeReason: 'TCG', fault: null, createdAt: now, updatedAt: now, ...extra };
}

function event(uuid: string, name: string): OutboxMessage {
  n += 1;
  return { id: `5b0e2f4a-8c1d-4e7f-9a2b-${n.toString().padStart(12, '0')}`, exchange: 'novalet.events', routingKey: `instance.${uuid}.${name}`, content: '{}', mandatory: false, stream: uuid, at: n };
}

async function store(dir = tempDir()): Promise<InstanceStore> {
  const s = new InstanceStore(dir, capturedLogger().log);
  await s.load();
  return s;
}

describe('InstanceStore', () => {
  it('writes through: a record is on disk whole (no temporary file) before it is seen, and read back once by the next start', async () => {
    const dir = tempDir();
    const s = await store(dir);
    const r = record();
    await s.commit(r);
    await s.commit({ ...r, state: 'stopped' });
    expect(readdirSync(dir)).toEqual([`${r.uuid}.json`]);
    expect(JSON.parse(readFileSync(path.join(dir, `${r.uuid}.json`), 'utf8'))).toMatchObject({ state: 'stopped' });
    const again = await store(dir);
    expect(again.get(r.uuid)).toMatchObject({ state: 'stopped' });
    expect(again.list()).toHaveLength(1);
  });

  it('keeps a record\'s events with it until each is confirmed; unconfirmed ones are there for the next start', async () => {
    const dir = tempDir();
    const s = await store(dir);
    const handed: string[] = [];
    s.onPending = (_uuid, messages) => handed.push(...messages.map((m) => m.id));
    const r = record();
    const [a, b] = [event(r.uuid, 'power.off'), event(r.uuid, 'power.on')];
    await s.commit(r, [a]);
    await s.commit({ ...r, state: 'stopped' }, [b]);
    expect(handed).toEqual([a.id, b.id]);
    expect(s.get(r.uuid)!.outbox!.map((m) => m.id)).toEqual([a.id, b.id]);
    s.confirm(r.uuid, a.id);
    await s.settle();
    const after = await store(dir);
    expect(after.pending()).toEqual([{ uuid: r.uuid, messages: [expect.objectContaining({ id: b.id })] }]);
  });

  it('an event the broker confirms while a later commit of its record is being written stays confirmed (not put back, not kept for ever)', async () => {
    const dir = tempDir();
    const s = await store(dir);
    const r = record();
    const [a, b] = [event(r.uuid, 'power.off'), event(r.uuid, 'power.on')];
    await s.commit(r, [a]);
    const writing = s.commit({ ...r, state: 'stopped' }, [b]);
    // The confirmation lands while the second write is under way (its temporary file is there).
    let during = false;
    for (let i = 0; i < 10_000 && !during; i++) {
      await new Promise((resolve) => setImmediate(resolve));
      during = readdirSync(dir).some((f) => f.endsWith('.tmp'));
    }
    expect(during).toBe(true);
    s.confirm(r.uuid, a.id);
    await writing;
    expect(s.get(r.uuid)!.outbox!.map((m) => m.id)).toEqual([b.id]);
    await s.settle();
    expect((await store(dir)).pending()).toEqual([{ uuid: r.uuid, messages: [expect.objectContaining({ id: b.id })] }]);
  });

  it('settle() writes each record as it is once the writes before it are done, never an older copy over a newer one', async () => {
    const dir = tempDir();
    const s = await store(dir);
    const r = record();
    const a = event(r.uuid, 'power.off');
    await s.commit(r, [a]);
    s.confirm(r.uuid, a.id);
    // A commit queued, then settle() (a stop) before it has been written.
    const newer = s.commit({ ...r, state: 'stopped' });
    await Promise.all([newer, s.settle()]);
    expect(JSON.parse(readFileSync(path.join(dir, `${r.uuid}.json`), 'utf8'))).toMatchObject({ state: 'stopped' });
    expect((await store(dir)).get(r.uuid)).toMatchObject({ state: 'stopped' });
  });

  it('an unreadable record is moved aside and named; the others are served', async () => {
    const dir = tempDir();
    const good = record();
    writeFileSync(path.join(dir, `${good.uuid}.json`), JSON.stringify(good));
    const broken = record();
    writeFileSync(path.join(dir, `${broken.uuid}.json`), '{"uuid": ');
    const misnamed = record();
    writeFileSync(path.join(dir, `${record().uuid}.json`), JSON.stringify(misnamed));
    writeFileSync(path.join(dir, `${good.uuid}.json.123.4.tmp`), '');
    const captured = capturedLogger();
    const s = new InstanceStore(dir, captured.log);
    const loaded = await s.load();
    expect(loaded.loaded).toBe(1);
    expect(loaded.swept).toHaveLength(1);
    expect(s.list().map((r) => r.uuid)).toEqual([good.uuid]);
    expect(loaded.unreadable.map((u) => u.reason).sort()).toEqual(['it is not valid JSON', 'its uuid is not the one its name says']);
    for (const u of loaded.unreadable) expect(existsSync(u.movedTo)).toBe(true);
    expect(s.unreadable).toHaveLength(2);
    expect(captured.lines.filter((l) => l.level === 50 && String(l.msg).includes('moved aside'))).toHaveLength(2);
  });

  it('purges deleted and handed-back records past their retention, and nothing with events still to publish', async () => {
    const dir = tempDir();
    const s = await store(dir);
    const old = new Date(Date.now() - 3_600_000).toISOString();
    const deleted = await s.commit(record({ state: 'deleted' }));
    const handedBack = await s.commit(record({ state: 'error', origin: { messageId: 'm', body: {}, rescheduledAt: old } }));
    const unpublished = record({ state: 'deleted' });
    await s.commit(unpublished, [event(unpublished.uuid, 'delete.end')]);
    const live = await s.commit(record());
    // updatedAt is set by the caller; make the first two old.
    await s.commit({ ...deleted, updatedAt: old });
    await s.commit({ ...handedBack, updatedAt: old });
    await s.commit({ ...s.get(unpublished.uuid)!, updatedAt: old });
    const purged = await s.purge(60_000);
    expect(purged.sort()).toEqual([deleted.uuid, handedBack.uuid].sort());
    expect(s.list().map((r) => r.uuid).sort()).toEqual([unpublished.uuid, live.uuid].sort());
    expect(readdirSync(dir).sort()).toEqual([`${unpublished.uuid}.json`, `${live.uuid}.json`].sort());
  });

  it('on a full disk a write is refused whole (DISK_FULL naming the folder), nothing changes, no temporary file is left; the next good write clears it', async () => {
    const fs = mountSmallFileSystem(256);
    mounts.push(fs);
    const s = await store(fs.dir);
    const r = await s.commit(record());
    fs.fill();
    await expect(s.commit({ ...r, state: 'stopped' }, [event(r.uuid, 'power.off')])).rejects.toMatchObject({ code: 'DISK_FULL', message: expect.stringContaining(fs.dir) });
    expect(s.get(r.uuid)).toMatchObject({ state: 'active' });
    expect(s.get(r.uuid)!.outbox).toBeUndefined();
    expect(s.diskFull).toMatchObject({ message: expect.stringContaining('is full') });
    expect(readdirSync(fs.dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    fs.free();
    await s.commit({ ...r, state: 'stopped' });
    expect(s.diskFull).toBeNull();
  });
});
