/**
 * The agent's own logic on the fake driver: nova's states through each
 * operation, idempotence by UUID, faults recorded, lifecycle events turned
 * into states. The same operations on the libvirt driver are in
 * test/integration/launch.test.ts.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ComputeInstances } from '../../agent/compute-instances.js';
import { InstanceStore } from '../../agent/instance-store.js';
import { watchLifecycle } from '../../agent/lifecycle-watch.js';
import { createLogger } from '../../config/logger.js';
import { NovaletError } from '../../config/novalet-error.js';
import type { InstanceSpec } from '../../hypervisor/compute-driver.js';
import { FakeComputeDriver } from '../support/fake-compute-driver.js';

function setUp() {
  const driver = new FakeComputeDriver();
  const store = new InstanceStore(mkdtempSync(path.join(tmpdir(), 'novalet-agent-')));
  return { driver, store, compute: new ComputeInstances(driver, store, 'host-a') };
}

const spec = (name: string, extra: Partial<InstanceSpec> = {}): InstanceSpec => ({ name, vcpus: 1, memoryMiB: 256, kernel: '/boot/vmlinuz', ...extra });

async function until(check: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 100 && !(await check()); i++) await new Promise((resolve) => setTimeout(resolve, 5));
}

describe('ComputeInstances on the fake driver', () => {
  it('a build goes BUILDING → ACTIVE, with the virt type and why, and is on record', async () => {
    const { compute, store } = setUp();
    const record = await compute.spawn(spec('web-1'));
    expect(record).toMatchObject({ name: 'web-1', host: 'host-a', state: 'active', task: null, virtType: 'qemu', fault: null });
    expect(record.virtTypeReason).toContain('TCG');
    expect(await store.read(record.uuid)).toEqual(record);
  });

  it('is idempotent by UUID: a build asked again returns the instance, and the driver is asked once', async () => {
    const { compute, driver } = setUp();
    const first = await compute.spawn(spec('web-1', { uuid: '0b6c8f3e-2a4d-4c1e-9f00-123456789abc' }));
    const again = await compute.spawn(spec('web-1', { uuid: '0b6c8f3e-2a4d-4c1e-9f00-123456789abc' }));
    expect(again).toEqual(first);
    expect(driver.calls.filter((c) => c.startsWith('spawn'))).toHaveLength(1);
  });

  it('a build the driver refuses ends in ERROR with the fault, and nothing is left in the driver', async () => {
    const { compute, driver } = setUp();
    driver.failNextSpawn(new NovaletError('KVM_UNAVAILABLE', 'could not find capabilities for domaintype=kvm: KVM is not usable on this host.', 'Set [libvirt] virt_type = qemu.'));
    const record = await compute.spawn(spec('needs-kvm'));
    expect(record.state).toBe('error');
    expect(record.fault).toMatchObject({ code: 'KVM_UNAVAILABLE' });
    expect(record.fault?.message).toMatch(/^could not find capabilities for domaintype=kvm/);
    expect(await driver.list()).toEqual([]);
  });

  it('nonsense is refused before any record or guest exists', async () => {
    const { compute, driver, store } = setUp();
    await expect(compute.spawn(spec('zero', { memoryMiB: 0 }))).rejects.toMatchObject({ code: 'INSTANCE_SPEC_INVALID' });
    expect(await store.list()).toEqual([]);
    expect(driver.calls).toEqual([]);
  });

  it('stop, start, reboot (soft and hard) and delete move the record through nova’s states', async () => {
    const { compute, driver } = setUp();
    const { uuid } = await compute.spawn(spec('ops'));
    expect((await compute.stop(uuid, 0)).state).toBe('stopped');
    expect(await driver.state(uuid)).toBe('shutdown');
    expect((await compute.start(uuid)).state).toBe('active');
    expect((await compute.reboot(uuid, 'SOFT')).state).toBe('active');
    expect((await compute.reboot(uuid, 'HARD')).state).toBe('active');
    expect(driver.calls).toContain(`reboot HARD ${uuid}`);
    const deleted = await compute.delete(uuid);
    expect(deleted).toMatchObject({ state: 'deleted', task: null });
    expect(await driver.list()).toEqual([]);
    await expect(compute.start(uuid)).rejects.toMatchObject({ code: 'INSTANCE_NOT_FOUND' });
  });

  it('an operation the driver refuses leaves the state as it was and no task behind', async () => {
    const { compute } = setUp();
    const { uuid } = await compute.spawn(spec('refused'));
    await compute.stop(uuid, 0);
    await expect(compute.reboot(uuid, 'SOFT')).rejects.toMatchObject({ code: 'INSTANCE_NOT_RUNNING' });
    expect(await compute.get(uuid)).toMatchObject({ state: 'stopped', task: null });
  });

  it('lifecycle events: a guest that powered itself off is STOPPED; one that crashed is ERROR with a fault', async () => {
    const { compute, driver } = setUp();
    const stop = watchLifecycle(driver, compute, createLogger({ debug: false }));
    try {
      const off = await compute.spawn(spec('self-off'));
      driver.guestPowersOff(off.uuid);
      await until(async () => (await compute.get(off.uuid))?.state === 'stopped');
      expect(await compute.get(off.uuid)).toMatchObject({ state: 'stopped', fault: null });

      const crash = await compute.spawn(spec('crash'));
      driver.guestCrashes(crash.uuid);
      await until(async () => (await compute.get(crash.uuid))?.state === 'error');
      expect((await compute.get(crash.uuid))?.fault).toMatchObject({ code: 'GUEST_CRASHED' });

      // A stop novalet asked for is recorded by the operation, not taken for the guest's own.
      const asked = await compute.spawn(spec('asked'));
      await compute.stop(asked.uuid, 0);
      await compute.start(asked.uuid);
      await new Promise((resolve) => setTimeout(resolve, 20));
      expect((await compute.get(asked.uuid))?.state).toBe('active');
    } finally {
      stop();
    }
  });
});
