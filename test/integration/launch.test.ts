/**
 * The launch path against real libvirt (embedded QEMU driver through koffi),
 * real QEMU under TCG and real qemu-img, on this machine — whose KVM
 * (kvm_pvm) answers every ioctl but does not run ordinary guests.
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ComputeInstances } from '../../agent/compute-instances.js';
import { InstanceStore } from '../../agent/instance-store.js';
import { watchLifecycle } from '../../agent/lifecycle-watch.js';
import { createLogger } from '../../config/logger.js';
import { waitForConsoleLine } from '../../hypervisor/instance/console-follow.js';
import { InstanceLauncher } from '../../hypervisor/instance/libvirt-driver.js';
import { validateInstanceSpec, type InstanceSpec } from '../../hypervisor/instance/spec.js';
import { prepareHost, type PreparedHost } from '../../hypervisor/compute-host.js';
import type { LibvirtConnection } from '../../hypervisor/libvirt/connection.js';
import { NOVALET_METADATA_URI } from '../../hypervisor/instance/metadata.js';
import { READY_MARKER, testGuestCmdline, testGuestFiles } from '../../hypervisor/virt-type/test-guest.js';
import { TEST_GUEST_DIR } from '../guest/test-guest.js';
import { openTestRoot } from '../libvirt/libvirt-test-support.js';
import { testConfig } from './launch-support.js';

const guest = testGuestFiles(TEST_GUEST_DIR);
const BOOT_MS = 60_000;

let connection: LibvirtConnection;
let host: PreparedHost;
let launcher: InstanceLauncher;
let compute: ComputeInstances;
const { config, stateDir } = testConfig();
const spawned: string[] = [];
let stopWatching: ReturnType<typeof watchLifecycle> | undefined;

beforeAll(async () => {
  connection = (await openTestRoot()).connection;
  host = await prepareHost({ config, connection, workDir: stateDir });
  launcher = new InstanceLauncher({ connection, config, host, instancesPath: config.DEFAULT.instances_path });
  compute = new ComputeInstances(launcher, new InstanceStore(path.join(stateDir, 'instances.d')), 'test-host');
  stopWatching = watchLifecycle(connection, compute, createLogger());
  await stopWatching.ready;
}, 180_000);

afterAll(async () => {
  stopWatching?.();
  for (const uuid of spawned) await launcher.delete(uuid).catch(() => undefined);
  await connection?.close();
});

function kernelSpec(name: string, extra: Partial<InstanceSpec> = {}): InstanceSpec {
  return { name, vcpus: 1, memoryMiB: 256, kernel: guest.kernel, ramdisk: guest.initramfs, cmdline: testGuestCmdline(name), ...extra };
}

async function marker(uuid: string, pattern = READY_MARKER): Promise<string> {
  const line = await waitForConsoleLine(path.join(launcher.instanceDir(uuid), 'console.log'), pattern, BOOT_MS);
  expect(line, `no ${pattern} on the console of ${uuid}`).not.toBeNull();
  return line as string;
}

describe('KVM decision on this machine (kvm_pvm)', () => {
  it('runs the self-test, sees it fail, and makes KVM unusable with the self-test as a reason', () => {
    expect(host.selfTest).not.toBeNull();
    expect(host.selfTest?.passed).toBe(false);
    expect(host.selfTest?.detail).toMatch(/printed no marker on its serial console within 8 s|could not start a KVM guest/);
    expect(host.verdict.usable).toBe(false);
    expect(host.verdict.reasons.map((r) => r.code)).toEqual(expect.arrayContaining(['KVM_MODULE_PVM', 'KVM_SELFTEST_FAILED']));
  });

  it('leaves no self-test domain behind', async () => {
    const names = await Promise.all((await connection.listAllDomains()).map(async (d) => { const n = d.name; await d.free(); return n; }));
    expect(names.filter((n) => n.includes('kvm-self-test'))).toEqual([]);
    expect(readdirSync(stateDir).filter((n) => n.startsWith('kvm-self-test-'))).toEqual([]);
  });

  it('with virt_type = kvm (the default) runs the instance under TCG and the record says why', async () => {
    const record = await compute.spawn(kernelSpec('decided'));
    spawned.push(record.uuid);
    expect(record.state).toBe('active');
    expect(record.virtType).toBe('qemu');
    expect(record.virtTypeReason).toContain('KVM is not usable on this host');
    expect(record.virtTypeReason).toContain('kvm_pvm');
    expect(record.virtTypeReason).toContain('fallback_virt_type = qemu');
    expect(await marker(record.uuid)).toMatch(/name=decided /);
    // The record is mirrored in the domain's metadata.
    const domain = await connection.lookupByUuid(record.uuid);
    const meta = await domain!.getMetadata('element', NOVALET_METADATA_URI);
    await domain!.free();
    expect(meta).toMatch(/<virtType reason="[^"]*kvm_pvm[^"]*">qemu<\/virtType>/);
    expect(meta).toContain('kvm_pvm');
    const xml = await launcher.state(record.uuid);
    expect(xml.state).toBe('running');
  });
});

describe('instances under TCG', () => {
  it('boots the test guest to its marker by direct kernel boot', async () => {
    const spec = validateInstanceSpec(kernelSpec('direct-1'));
    const launched = await launcher.spawn(spec);
    spawned.push(spec.uuid);
    expect(launched.virtType).toBe('qemu');
    const line = await marker(spec.uuid);
    const [, name, model, flags] = READY_MARKER.exec(line) ?? [];
    expect(name).toBe('direct-1');
    expect(model?.length).toBeGreaterThan(0);
    expect(flags).toContain('fpu');
  });

  it('boots a qcow2 overlay on a cached base image, and reuses the cache', async () => {
    const first = validateInstanceSpec({ name: 'disk-1', vcpus: 1, memoryMiB: 256, image: { source: guest.disk } });
    const a = await launcher.spawn(first);
    spawned.push(first.uuid);
    expect(a.image?.format).toBe('qcow2');
    expect(existsSync(a.image!.path)).toBe(true);
    expect(await marker(first.uuid, /NOVALET-TEST-GUEST-DISK NOVALET-TG/)).toBeTruthy();
    expect(await marker(first.uuid)).toContain(`name=${first.uuid}`);
    const second = validateInstanceSpec({ name: 'disk-2', vcpus: 1, memoryMiB: 256, image: { source: guest.disk, checksum: `sha256:${a.image!.sha256}` } });
    const b = await launcher.spawn(second);
    spawned.push(second.uuid);
    expect(b.image?.path).toBe(a.image?.path);
    expect(readdirSync(path.dirname(a.image!.path)).filter((n) => !n.endsWith('.info.json'))).toEqual([a.image!.sha256]);
  });

  it('destroys, powers on, reboots, powers off by ACPI, and deletes with its files gone', async () => {
    const record = await compute.spawn(kernelSpec('ops-1'));
    spawned.push(record.uuid);
    const log = path.join(launcher.instanceDir(record.uuid), 'console.log');
    await marker(record.uuid);

    expect((await compute.destroy(record.uuid)).state).toBe('stopped');
    expect((await launcher.state(record.uuid)).state).toBe('shutoff');

    expect((await compute.powerOn(record.uuid)).state).toBe('active');
    expect((await launcher.state(record.uuid)).state).toBe('running');
    await waitFor(() => readFileSync(log, 'utf8').split('NOVALET-TEST-GUEST-READY').length - 1 >= 2);

    await compute.reboot(record.uuid);
    await waitFor(() => readFileSync(log, 'utf8').split('NOVALET-TEST-GUEST-READY').length - 1 >= 3);

    const stopped = await compute.powerOff(record.uuid, 30_000);
    expect(stopped.state).toBe('stopped');
    expect(readFileSync(log, 'utf8')).toContain('NOVALET-TEST-GUEST-POWEROFF');
    expect((await launcher.state(record.uuid)).state).toBe('shutoff');

    const deleted = await compute.delete(record.uuid);
    expect(deleted.state).toBe('deleted');
    expect(existsSync(launcher.instanceDir(record.uuid))).toBe(false);
    expect(await connection.lookupByUuid(record.uuid)).toBeNull();
  });

  it('notices a guest that powered itself off (lifecycle event) and records it STOPPED', async () => {
    const record = await compute.spawn(kernelSpec('self-off'));
    spawned.push(record.uuid);
    await marker(record.uuid);
    // The power button pressed behind novalet's back, as a guest shutting down by itself.
    const domain = await connection.lookupByUuid(record.uuid);
    await domain!.shutdown();
    await domain!.free();
    const deadline = Date.now() + BOOT_MS;
    let state = (await compute.get(record.uuid))?.state;
    while (state !== 'stopped' && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200));
      state = (await compute.get(record.uuid))?.state;
    }
    expect(state).toBe('stopped');
    expect(readFileSync(path.join(launcher.instanceDir(record.uuid), 'console.log'), 'utf8')).toContain('NOVALET-TEST-GUEST-POWEROFF');
  });

  it('starts a guest of another architecture (aarch64) under TCG with qemu-system-aarch64', async () => {
    // No Arm kernel is built here: the guest will not print anything, but its domain must run.
    const spec = validateInstanceSpec({ ...kernelSpec('arm-1'), ramdisk: undefined, cmdline: undefined, imageProperties: { hw_architecture: 'aarch64' } });
    const launched = await launcher.spawn(spec);
    spawned.push(spec.uuid);
    expect(launched.virtType).toBe('qemu');
    expect(launched.virtTypeReason).toBe("The guest's architecture aarch64 is not this host's (x86_64), so it runs under TCG software emulation.");
    expect((await launcher.state(spec.uuid)).state).toBe('running');
    const domain = await connection.lookupByUuid(spec.uuid);
    const xml = await domain!.getXmlDesc();
    await domain!.free();
    expect(xml).toContain("<domain type='qemu'");
    expect(xml).toContain('<emulator>/usr/bin/qemu-system-aarch64</emulator>');
    expect(xml).toMatch(/machine='virt/);
    await launcher.delete(spec.uuid);
  });

  it('runs two guests at once', async () => {
    const [a, b] = [validateInstanceSpec(kernelSpec('pair-a')), validateInstanceSpec(kernelSpec('pair-b'))];
    spawned.push(a.uuid, b.uuid);
    await Promise.all([launcher.spawn(a), launcher.spawn(b)]);
    const [ma, mb] = await Promise.all([marker(a.uuid), marker(b.uuid)]);
    expect(ma).toContain('name=pair-a');
    expect(mb).toContain('name=pair-b');
  });
});

describe('bad input leaves nothing behind', () => {
  async function refused(spec: InstanceSpec): Promise<{ code: string; message: string }> {
    const record = await compute.spawn(spec);
    expect(record.state).toBe('error');
    expect(existsSync(launcher.instanceDir(record.uuid))).toBe(false);
    expect(await connection.lookupByUuid(record.uuid)).toBeNull();
    return record.fault!;
  }

  it('a name and metadata crafted to break XML boot as an ordinary guest', async () => {
    const evil = `x</name><devices><disk/></devices>"'&]]><!--`;
    const record = await compute.spawn(kernelSpec('crafted', { name: evil }));
    spawned.push(record.uuid);
    expect(record.state).toBe('active');
    const domain = await connection.lookupByUuid(record.uuid);
    const xml = await domain!.getXmlDesc();
    await domain!.free();
    expect(xml.match(/<disk /g) ?? []).toEqual([]);
    expect(xml).toContain('&lt;/name&gt;');
  });

  it('a checksum mismatch', async () => {
    const fault = await refused({ name: 'bad-sum', vcpus: 1, memoryMiB: 128, image: { source: guest.disk, checksum: `sha256:${'0'.repeat(64)}` } });
    expect(fault.code).toBe('IMAGE_CHECKSUM_MISMATCH');
  });

  it('a missing kernel file', async () => {
    const fault = await refused(kernelSpec('no-kernel', { kernel: '/nonexistent/vmlinuz' }));
    expect(fault.code).toBe('INSTANCE_FILE_MISSING');
    expect(fault.message).toContain('/nonexistent/vmlinuz');
  });

  it('zero or absurd memory or vCPUs are refused before anything is made', async () => {
    await expect(compute.spawn(kernelSpec('zero', { memoryMiB: 0 }))).rejects.toMatchObject({ code: 'INSTANCE_SPEC_INVALID' });
    await expect(compute.spawn(kernelSpec('many', { vcpus: 100_000 }))).rejects.toMatchObject({ code: 'INSTANCE_SPEC_INVALID' });
  });

  it('more vCPUs than QEMU allows for the machine: libvirt refuses and nothing is left', async () => {
    const fault = await refused(kernelSpec('too-many-vcpus', { vcpus: 4000 }));
    expect(fault.code).toBe('LIBVIRT_ERROR');
  });
});

async function waitFor(condition: () => boolean, timeoutMs = BOOT_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 100));
  }
}
