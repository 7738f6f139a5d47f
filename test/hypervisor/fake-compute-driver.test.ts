import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { validateInstanceSpec } from '../../hypervisor/compute-driver.js';
import { FakeComputeDriver, IGNORE_ACPI, type SpawnPhase } from '../support/fake-compute-driver.js';
import { computeDriverContract } from './compute-driver-contract.js';

const specNamed = (name: string, options: { ignoresAcpi?: boolean } = {}) =>
  validateInstanceSpec({ name, vcpus: 1, memoryMiB: 256, kernel: '/boot/vmlinuz', cmdline: options.ignoresAcpi ? `console=ttyS0 ${IGNORE_ACPI}` : 'console=ttyS0', virtType: 'qemu' });

computeDriverContract('the fake driver', async () => {
  const driver = new FakeComputeDriver();
  return {
    driver,
    spec: specNamed,
    guestPowersOff: async (uuid) => driver.guestPowersOff(uuid),
    stallingSpawn: (name) => {
      const spec = specNamed(name);
      driver.holdSpawns('download', spec.uuid);
      return { spec, stalled: driver.spawnHeld(spec.uuid) };
    },
    // The fake keeps nothing outside its map of guests.
    leftovers: async () => [],
    bootMs: 1000,
    teardown: async () => undefined,
  };
});

describe('the fake driver: a spawn aborted at each phase', () => {
  it.each(['download', 'define', 'create'] as const)('held at %s, then aborted: rejects with the reason, no guest, no event', async (phase: SpawnPhase) => {
    const driver = new FakeComputeDriver();
    const events: string[] = [];
    driver.onLifecycleEvent((event) => events.push(`${event.transition} ${event.uuid}`));
    const spec = specNamed(`held-${phase}`);
    driver.holdSpawns(phase, spec.uuid);
    const controller = new AbortController();
    const spawning = driver.spawn(spec, { signal: controller.signal }).then(
      () => 'resolved',
      (err: unknown) => err,
    );
    await driver.spawnHeld(spec.uuid);
    if (phase !== 'download') expect(await driver.list()).toEqual([{ uuid: spec.uuid, state: 'shutdown' }]);
    const reason = new Error('deleted during the build');
    controller.abort(reason);
    expect(await spawning).toBe(reason);
    expect(await driver.list()).toEqual([]);
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(events).toEqual([]);
    // Released later, nothing happens: the aborted spawn is over.
    driver.releaseSpawns();
    expect(await driver.list()).toEqual([]);
  });

  it('holding one instance\'s spawns leaves the others alone', async () => {
    const driver = new FakeComputeDriver();
    const held = specNamed('held');
    driver.holdSpawns('download', held.uuid);
    const other = specNamed('other');
    await driver.spawn(other);
    expect(await driver.state(other.uuid)).toBe('running');
    const spawning = driver.spawn(held);
    await driver.spawnHeld(held.uuid);
    driver.releaseSpawns();
    await spawning;
    expect(await driver.state(held.uuid)).toBe('running');
  });

  it('a guest can be told to ignore ACPI after it started, and to obey again', async () => {
    const driver = new FakeComputeDriver();
    const spec = specNamed('told');
    await driver.spawn(spec);
    driver.guestIgnoresAcpi(spec.uuid);
    expect(await driver.reboot(spec.uuid, 'SOFT')).toBe('HARD');
    driver.guestIgnoresAcpi(spec.uuid, false);
    expect(await driver.reboot(spec.uuid, 'SOFT')).toBe('SOFT');
    expect(driver.calls.filter((c) => c.startsWith('reboot'))).toEqual([`reboot SOFT ${spec.uuid}`, `reboot SOFT ${spec.uuid}`]);
    await expect(driver.reboot(randomUUID(), 'SOFT')).rejects.toMatchObject({ code: 'INSTANCE_NOT_FOUND' });
  });
});
