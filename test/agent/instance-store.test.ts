import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { InstanceRecord } from '../../agent/instance-record.js';
import { InstanceStore } from '../../agent/instance-store.js';

const RECORD: InstanceRecord = {
  uuid: '6f1c2a3e-0b4d-4c5e-8f9a-0123456789ab',
  name: 'web-1',
  host: 'node1',
  state: 'building',
  task: 'spawning',
  flavor: { vcpus: 1, memoryMiB: 256 },
  image: null,
  kernel: '/boot/vmlinuz',
  virtType: null,
  virtTypeReason: null,
  fault: null,
  createdAt: '2026-11-24T23:00:00.000Z',
  updatedAt: '2026-11-24T23:00:00.000Z',
};

describe('instance store', () => {
  it('writes, rewrites and lists records atomically, leaving no temporary files', async () => {
    const dir = path.join(mkdtempSync(path.join(tmpdir(), 'novalet-store-')), 'instances.d');
    const store = new InstanceStore(dir);
    expect(await store.read(RECORD.uuid)).toBeNull();
    expect(await store.list()).toEqual([]);
    await store.write(RECORD);
    await store.write({ ...RECORD, state: 'active', task: null, virtType: 'qemu', virtTypeReason: 'why' });
    expect(await store.read(RECORD.uuid)).toMatchObject({ state: 'active', virtType: 'qemu', virtTypeReason: 'why' });
    expect(await store.list()).toHaveLength(1);
    expect(readdirSync(dir)).toEqual([`${RECORD.uuid}.json`]);
  });

  it('names a corrupt record instead of crashing', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'novalet-store-'));
    writeFileSync(path.join(dir, `${RECORD.uuid}.json`), '{"uuid": ');
    await expect(new InstanceStore(dir).read(RECORD.uuid)).rejects.toMatchObject({ code: 'INSTANCE_RECORD_CORRUPT' });
  });
});
