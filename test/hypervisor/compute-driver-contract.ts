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
  /** A spec this driver can boot, named `name`; `ignoresAcpi`: its guest ignores the ACPI power button. */
  spec(name: string, options?: { ignoresAcpi?: boolean }): ValidInstanceSpec;
  /** Makes the guest power itself off, behind the driver's back (its OS shut down). */
  guestPowersOff(uuid: string): Promise<void>;
  /**
   * A spec whose spawn stalls in its longest phase (the image download) for
   * as long as nobody aborts it, and a promise that settles once the spawn
   * is stalled there.
   */
  stallingSpawn(name: string): { spec: ValidInstanceSpec; stalled: Promise<void> };
  /** What of the instance is left outside the driver's own answers (files, definitions); [] when nothing. */
  leftovers(uuid: string): Promise<string[]>;
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

    async function booted(uuid: string, times = 1): Promise<string[]> {
      return eventually(
        times === 1 ? 'the console marker' : `the console marker ${times} times`,
        async () => {
          // A boot prints a few hundred kernel lines before the marker: enough lines for `times` boots.
          const tail = await driver.consoleOutput(uuid, 1000 * times);
          return tail.filter((line) => line.includes('NOVALET-TEST-GUEST-READY')).length >= times ? tail : undefined;
        },
        subject.bootMs,
      );
    }

    /** What a rejection was, or that there was none. */
    async function outcome(promise: Promise<unknown>): Promise<unknown> {
      return promise.then(
        () => 'resolved',
        (err: unknown) => err,
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
      await booted(spec.uuid);
      expect((await driver.consoleOutput(spec.uuid, 200)).length).toBeLessThanOrEqual(200);
      expect(await driver.consoleOutput(spec.uuid, 1)).toHaveLength(1);
      expect(await driver.consoleOutput(spec.uuid, 0)).toEqual([]);
    });

    it('spawn of a UUID the driver has: INSTANCE_EXISTS, and the first guest is untouched', async () => {
      const uuid = await spawned('contract-twice');
      const again = await rejection(driver.spawn({ ...subject.spec('contract-twice-again'), uuid }));
      expect(again.code).toBe('INSTANCE_EXISTS');
      expect(await driver.state(uuid)).toBe('running');
    });

    it('power off (at once, and again), power on (and again), reboot HARD (running or not); SOFT needs a running guest', async () => {
      const uuid = await spawned('contract-power');
      expect(await driver.powerOff(uuid, 0)).toBe('forced');
      expect(await driver.state(uuid)).toBe('shutdown');
      expect(await driver.powerOff(uuid, 0)).toBe('clean');
      expect((await rejection(driver.reboot(uuid, 'SOFT'))).code).toBe('INSTANCE_NOT_RUNNING');
      await driver.powerOn(uuid);
      expect(await driver.state(uuid)).toBe('running');
      await driver.powerOn(uuid);
      expect(await driver.state(uuid)).toBe('running');
      expect(await driver.reboot(uuid, 'HARD')).toBe('HARD');
      expect(await driver.state(uuid)).toBe('running');
      await driver.powerOff(uuid, 0);
      expect(await driver.reboot(uuid, 'HARD')).toBe('HARD');
      expect(await driver.state(uuid)).toBe('running');
    });

    it('reboot SOFT: the guest shuts itself down on the power button and is started again: SOFT, and it boots again', async () => {
      const uuid = await spawned('contract-soft');
      await booted(uuid);
      const before = events.length;
      // A wide margin: this guest answers the button within a second or two.
      expect(await driver.reboot(uuid, 'SOFT', { softTimeoutMs: subject.bootMs })).toBe('SOFT');
      expect(await driver.state(uuid)).toBe('running');
      const console = await booted(uuid, 2);
      expect(console.some((line) => line.includes('NOVALET-TEST-GUEST-POWEROFF'))).toBe(true);
      const stopped = await eventually('the stopped event', async () => events.slice(before).find((e) => e.uuid === uuid && e.transition === 'stopped'), subject.bootMs);
      expect(stopped.byGuest).toBe(true);
    }, 240_000);

    it('reboot SOFT of a guest that ignores the power button: waited for softTimeoutMs, then rebooted HARD', async () => {
      const spec = subject.spec('contract-deaf', { ignoresAcpi: true });
      made.push(spec.uuid);
      await driver.spawn(spec);
      await booted(spec.uuid);
      const softTimeoutMs = 3000;
      const started = Date.now();
      expect(await driver.reboot(spec.uuid, 'SOFT', { softTimeoutMs })).toBe('HARD');
      // The wait is the behaviour: never cut short (timers may round a millisecond down).
      expect(Date.now() - started).toBeGreaterThanOrEqual(softTimeoutMs - 5);
      expect(await driver.state(spec.uuid)).toBe('running');
      const console = await booted(spec.uuid, 2);
      expect(console.some((line) => line.includes('NOVALET-TEST-GUEST-ACPI-IGNORED'))).toBe(true);
      expect(console.some((line) => line.includes('NOVALET-TEST-GUEST-POWEROFF'))).toBe(false);
    }, 240_000);

    it('reboot SOFT aborted while it waits for a guest that ignores the button: rejects with the reason, at once', async () => {
      const spec = subject.spec('contract-deaf-aborted', { ignoresAcpi: true });
      made.push(spec.uuid);
      await driver.spawn(spec);
      await booted(spec.uuid);
      const controller = new AbortController();
      const reason = new Error('the instance is being deleted');
      setTimeout(() => controller.abort(reason), 500);
      const started = Date.now();
      expect(await outcome(driver.reboot(spec.uuid, 'SOFT', { softTimeoutMs: 600_000, signal: controller.signal }))).toBe(reason);
      // Promptness is the behaviour; the margin is wide against a ten-minute wait.
      expect(Date.now() - started).toBeLessThan(30_000);
    }, 240_000);

    it('spawn with an aborted signal: rejects with its reason and makes nothing', async () => {
      const spec = subject.spec('contract-aborted-before');
      const reason = new Error('deleted before the build began');
      expect(await outcome(driver.spawn(spec, { signal: AbortSignal.abort(reason) }))).toBe(reason);
      expect((await driver.list()).map((i) => i.uuid)).not.toContain(spec.uuid);
      expect(await subject.leftovers(spec.uuid)).toEqual([]);
    });

    it('spawn aborted while it stalls in the download: rejects with the reason promptly, and leaves nothing', async () => {
      const { spec, stalled } = subject.stallingSpawn('contract-aborted-download');
      const controller = new AbortController();
      const spawning = outcome(driver.spawn(spec, { signal: controller.signal }));
      await stalled;
      const reason = new Error('the instance was deleted during the build');
      const started = Date.now();
      controller.abort(reason);
      expect(await spawning).toBe(reason);
      expect(Date.now() - started).toBeLessThan(20_000);
      expect((await driver.list()).map((i) => i.uuid)).not.toContain(spec.uuid);
      expect((await rejection(driver.state(spec.uuid))).code).toBe('INSTANCE_NOT_FOUND');
      expect(await subject.leftovers(spec.uuid)).toEqual([]);
    }, 120_000);

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
      const operations = [
        () => driver.state(uuid),
        () => driver.powerOff(uuid, 0),
        () => driver.powerOn(uuid),
        () => driver.reboot(uuid, 'HARD'),
        () => driver.reboot(uuid, 'SOFT'),
        () => driver.consoleOutput(uuid, 10),
      ];
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
