/**
 * What every ComputeDriver promises (hypervisor/compute-driver.ts), as tests
 * any driver can be given: the fake one (fake-compute-driver.test.ts) and the
 * libvirt one on real libvirt and QEMU (integration/libvirt-driver.test.ts).
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ComputeDriver, InstanceLifecycleEvent, ValidInstanceSpec } from '../../hypervisor/compute-driver.js';

export interface ContractSubject {
  driver: ComputeDriver;
  /** A spec this driver can boot, named `name`. */
  spec(name: string): ValidInstanceSpec;
  /** Makes the guest power itself off, behind the driver's back (its OS shut down). */
  guestPowersOff(uuid: string): Promise<void>;
  /** How long a guest takes to print its console marker here. */
  bootMs: number;
  teardown(): Promise<void>;
}

async function rejection(promise: Promise<unknown>): Promise<{ code?: string; message: string }> {
  return promise.then(
    () => ({ message: 'resolved' }),
    (err: unknown) => err as { code?: string; message: string },
  );
}

async function eventually<T>(what: string, check: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

export function computeDriverContract(name: string, setup: () => Promise<ContractSubject>): void {
  describe(`ComputeDriver contract: ${name}`, () => {
    let subject: ContractSubject;
    let driver: ComputeDriver;
    const events: InstanceLifecycleEvent[] = [];
    let unsubscribe: (() => void) | undefined;
    const made: string[] = [];

    beforeAll(async () => {
      subject = await setup();
      driver = subject.driver;
      const subscription = driver.onLifecycleEvent((event) => events.push(event));
      await subscription.ready;
      unsubscribe = subscription;
    }, 180_000);

    afterAll(async () => {
      unsubscribe?.();
      for (const uuid of made) await driver?.destroy(uuid);
      await subject?.teardown();
    });

    async function spawned(label: string): Promise<string> {
      const spec = subject.spec(label);
      made.push(spec.uuid);
      const result = await driver.spawn(spec);
      expect(result.uuid).toBe(spec.uuid);
      return spec.uuid;
    }

    async function booted(uuid: string): Promise<string[]> {
      return eventually(
        'the console marker',
        async () => {
          const tail = await driver.consoleOutput(uuid, 200);
          return tail.some((line) => line.includes('NOVALET-TEST-GUEST-READY')) ? tail : undefined;
        },
        subject.bootMs,
      );
    }

    it('spawn: the guest runs, is listed, says its virt type and why, and boots to its console marker', async () => {
      const spec = subject.spec('contract-spawn');
      made.push(spec.uuid);
      const result = await driver.spawn(spec);
      expect(result.uuid).toBe(spec.uuid);
      expect(['kvm', 'qemu']).toContain(result.virtType);
      expect(result.virtTypeReason.length).toBeGreaterThan(10);
      expect(result.guestCpu.setting).toMatch(/^cpu_mode = /);
      expect(await driver.state(spec.uuid)).toBe('running');
      expect(await driver.list()).toContainEqual({ uuid: spec.uuid, state: 'running' });
      expect((await booted(spec.uuid)).length).toBeLessThanOrEqual(200);
      expect(await driver.consoleOutput(spec.uuid, 1)).toHaveLength(1);
      expect(await driver.consoleOutput(spec.uuid, 0)).toEqual([]);
    });

    it('spawn of a UUID the driver has: INSTANCE_EXISTS, and the first guest is untouched', async () => {
      const uuid = await spawned('contract-twice');
      const again = await rejection(driver.spawn({ ...subject.spec('contract-twice-again'), uuid }));
      expect(again.code).toBe('INSTANCE_EXISTS');
      expect(await driver.state(uuid)).toBe('running');
    });

    it('power off (at once, and again), power on (and again), reboot HARD and SOFT; SOFT needs a running guest', async () => {
      const uuid = await spawned('contract-power');
      expect(await driver.powerOff(uuid, 0)).toBe('forced');
      expect(await driver.state(uuid)).toBe('shutdown');
      expect(await driver.powerOff(uuid, 0)).toBe('clean');
      expect((await rejection(driver.reboot(uuid, 'SOFT'))).code).toBe('INSTANCE_NOT_RUNNING');
      await driver.powerOn(uuid);
      expect(await driver.state(uuid)).toBe('running');
      await driver.powerOn(uuid);
      expect(await driver.state(uuid)).toBe('running');
      await driver.reboot(uuid, 'HARD');
      expect(await driver.state(uuid)).toBe('running');
      await driver.reboot(uuid, 'SOFT');
      expect(await driver.state(uuid)).toBe('running');
      await driver.powerOff(uuid, 0);
      await driver.reboot(uuid, 'HARD');
      expect(await driver.state(uuid)).toBe('running');
    });

    it('destroy: the guest is gone, from the list and for every operation; destroying it again is not an error', async () => {
      const uuid = await spawned('contract-destroy');
      await driver.destroy(uuid);
      expect((await driver.list()).map((i) => i.uuid)).not.toContain(uuid);
      expect((await rejection(driver.state(uuid))).code).toBe('INSTANCE_NOT_FOUND');
      await driver.destroy(uuid);
      // The UUID is free again.
      await driver.spawn({ ...subject.spec('contract-destroy-again'), uuid });
      expect(await driver.state(uuid)).toBe('running');
    });

    it('an instance the driver does not have: INSTANCE_NOT_FOUND for every operation but destroy', async () => {
      const uuid = randomUUID();
      const operations = [() => driver.state(uuid), () => driver.powerOff(uuid, 0), () => driver.powerOn(uuid), () => driver.reboot(uuid, 'HARD'), () => driver.consoleOutput(uuid, 10)];
      for (const operation of operations) expect((await rejection(operation())).code).toBe('INSTANCE_NOT_FOUND');
      await driver.destroy(uuid);
    });

    it('lifecycle events: a guest that powers itself off is reported stopped by the guest; a stop that was asked for is not', async () => {
      const uuid = await spawned('contract-events');
      await booted(uuid);
      await subject.guestPowersOff(uuid);
      const byGuest = await eventually('the stopped event', async () => events.find((e) => e.uuid === uuid && e.transition === 'stopped'), subject.bootMs);
      expect(byGuest.byGuest).toBe(true);
      expect(await driver.state(uuid)).toBe('shutdown');
      const before = events.length;
      await driver.powerOn(uuid);
      await eventually('the started event', async () => events.slice(before).find((e) => e.uuid === uuid && e.transition === 'started'), subject.bootMs);
      const started = events.length;
      await driver.powerOff(uuid, 0);
      const asked = await eventually('the second stopped event', async () => events.slice(started).find((e) => e.uuid === uuid && e.transition === 'stopped'), subject.bootMs);
      expect(asked.byGuest).toBe(false);
    });

    it('host capabilities: the wire fields, consistent with each other; no kvm where KVM is unusable', async () => {
      const caps = await driver.hostCapabilities();
      expect(caps.hypervisor_type).toBe('QEMU');
      expect(caps.hypervisor_version).toBeGreaterThan(1_000_000);
      expect(caps.hypervisor_hostname.length).toBeGreaterThan(0);
      expect(caps.cpu_info.arch).toBe(caps.cpu.cpu_info.arch);
      expect(caps.kvm.usable).toBe(caps.kvm.reasons.length === 0);
      const kvmEntries = caps.supported_instances.filter(([, hvType]) => hvType === 'kvm');
      if (!caps.kvm.usable) {
        expect(kvmEntries).toEqual([]);
        expect(caps.cpu_models.kvm).toBeUndefined();
      }
      expect(caps.supported_instances).toContainEqual([caps.cpu_info.arch, 'qemu', 'hvm']);
      expect(caps.effective_virt_type).toBe(caps.cpu.guest_cpu.virt_type);
      expect(caps.traits).toEqual(caps.cpu.guest_cpu.traits);
      expect(caps.cpu_models.qemu?.length).toBeGreaterThan(0);
    });
  });
}
