/**
 * Start-up reconciliation on the fake driver: an interrupted build is built
 * again from its record (or failed without one), a running domain is
 * adopted, a lost domain is an ERROR, a domain without a record is reported
 * and left alone.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ComputeInstances } from '../../agent/compute-instances.js';
import { InstanceStore } from '../../agent/instance-store.js';
import { recoverInstances } from '../../agent/recovery.js';
import { createLogger } from '../../config/logger.js';
import { validateInstanceSpec } from '../../hypervisor/compute-driver.js';
import { FakeComputeDriver } from '../support/fake-compute-driver.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function setUp() {
  const dir = mkdtempSync(path.join(tmpdir(), 'novalet-recovery-'));
  dirs.push(dir);
  const driver = new FakeComputeDriver();
  const store = new InstanceStore(dir);
  return { driver, store, compute: new ComputeInstances(driver, store, 'h1') };
}

const spec = (n: number) => validateInstanceSpec({ uuid: `0b6c8f3e-2a4d-4c1e-9f00-${String(n).padStart(12, '0')}`, name: `i${n}`, vcpus: 1, memoryMiB: 64, kernel: '/k' });
const log = createLogger({ name: 'test' });

describe('recoverInstances', () => {
  it('sorts every record into one outcome and never destroys a domain without a record', async () => {
    const { driver, compute, store } = setUp();
    // 1: an interrupted build from the bus (record BUILDING, its domain half made); 2: one with no request on record.
    const one = await compute.begin(spec(1), { origin: { messageId: 'm1', body: { x: 1 }, rescheduledAt: null } });
    driver.addGuest(spec(1));
    await compute.begin(spec(2));
    // 3: active and running; 4: active but its domain is gone; 5: a domain nobody recorded; 6: stopped whose guest runs.
    await compute.spawn(spec(3));
    await compute.spawn(spec(4));
    await driver.destroy(spec(4).uuid);
    driver.addGuest(spec(5));
    const six = await compute.spawn(spec(6));
    await store.write({ ...six, state: 'stopped' });

    const result = await recoverInstances(driver, compute, log);
    expect(result.rebuild.map((r) => r.uuid)).toEqual([one.record.uuid]);
    expect(result.failed).toEqual([spec(2).uuid]);
    expect(result.lost).toEqual([spec(4).uuid]);
    expect(result.unrecorded.map((d) => d.uuid)).toEqual([spec(5).uuid]);
    expect(result.adopted.sort()).toEqual([spec(3).uuid, spec(6).uuid].sort());
    // The half-made domain of the interrupted build is gone; the unrecorded one is still there.
    const left = (await driver.list()).map((d) => d.uuid).sort();
    expect(left).toEqual([spec(3).uuid, spec(5).uuid, spec(6).uuid].sort());
    expect((await store.read(spec(2).uuid))?.fault?.code).toBe('BUILD_INTERRUPTED');
    expect((await store.read(spec(4).uuid))?.state).toBe('error');
    expect((await store.read(spec(6).uuid))?.state).toBe('active');
  });

  it('finishes a delete that was under way', async () => {
    const { driver, compute, store } = setUp();
    const r = await compute.spawn(spec(7));
    await store.write({ ...r, task: 'deleting' });
    const result = await recoverInstances(driver, compute, log);
    expect(result.finished).toEqual([r.uuid]);
    expect((await store.read(r.uuid))?.state).toBe('deleted');
    expect(await driver.list()).toEqual([]);
  });
});
