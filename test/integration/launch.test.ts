/**
 * The launch path against real libvirt (embedded QEMU driver through koffi),
 * real QEMU and real qemu-img, on a compute host assembled as the service
 * assembles one. The KVM decision is checked against what this host's probe
 * and self-test find (test/support/host-invariants.ts), whatever host it is;
 * the instance tests ask for TCG explicitly, which every host has.
 */
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { InstanceRecord } from '../../agent/instance-record.js';
import { watchLifecycle } from '../../agent/lifecycle-watch.js';
import { createLogger } from '../../config/logger.js';
import type { ComputeHost } from '../../hypervisor/compute-host.js';
import { waitForConsoleLine } from '../../hypervisor/instance/console-follow.js';
import type { LibvirtDriver } from '../../hypervisor/instance/libvirt-driver.js';
import { validateInstanceSpec, type InstanceSpec } from '../../hypervisor/instance/spec.js';
import type { LibvirtConnection } from '../../hypervisor/libvirt/connection.js';
import { NOVALET_METADATA_URI } from '../../hypervisor/instance/metadata.js';
import { decideVirtType, selfTestNotNeeded } from '../../hypervisor/virt-type/decision.js';
import { READY_MARKER, testGuestCmdline, testGuestFiles } from '../../hypervisor/virt-type/test-guest.js';
import { TEST_GUEST_DIR } from '../guest/test-guest.js';
import { AgentHarness } from '../support/agent-harness.js';
import { hostInvariantViolations } from '../support/host-invariants.js';
import { testComputeHost, testConfig } from './launch-support.js';

const guest = testGuestFiles(TEST_GUEST_DIR);
const BOOT_MS = 60_000;

let connection: LibvirtConnection;
let host: ComputeHost;
let driver: LibvirtDriver;
let agent: AgentHarness;
// Builds name the test guest's files, as a build from the bus names files of [compute] image_dir.
const { config, stateDir } = testConfig(`[compute]\nimage_dir = ${TEST_GUEST_DIR}`);
const spawned: string[] = [];
let stopWatching: ReturnType<typeof watchLifecycle> | undefined;

beforeAll(async () => {
  host = await testComputeHost(config);
  ({ connection, driver } = host);
  agent = await AgentHarness.start({ config, driver });
  stopWatching = watchLifecycle(driver, agent.core.instances, agent.core.locks, createLogger());
  await stopWatching.ready;
}, 180_000);

afterAll(async () => {
  stopWatching?.();
  await agent?.stop();
  for (const uuid of spawned) await driver.destroy(uuid).catch(() => undefined);
  await host?.close();
});

/** The test guest by direct kernel boot, under TCG unless `extra` says otherwise. */
function kernelSpec(name: string, extra: Partial<InstanceSpec> = {}): InstanceSpec {
  return { name, vcpus: 1, memoryMiB: 256, kernel: guest.kernel, ramdisk: guest.initramfs, cmdline: testGuestCmdline(name), virtType: 'qemu', ...extra };
}

/** A build of the test guest as the bus sends one (kernel and initramfs by name), under TCG unless `hvType` is undefined. */
async function build(name: string, options: { hvType?: 'qemu' | undefined; vcpus?: number } = { hvType: 'qemu' }): Promise<InstanceRecord> {
  const uuid = randomUUID();
  const properties: Record<string, string> = options.hvType ? { img_hv_type: options.hvType } : {};
  await agent.build({
    instance: {
      uuid,
      name,
      flavor: { name: 'm1.test', vcpus: options.vcpus ?? 1, memory_mb: 256, root_gb: 0, extra_specs: {} },
      image: { kernel: { name: path.basename(guest.kernel) }, ramdisk: { name: path.basename(guest.initramfs) }, cmdline: testGuestCmdline(name), properties },
    },
  });
  await agent.core.builds.ended(uuid);
  spawned.push(uuid);
  return agent.core.instances.get(uuid)!;
}

async function operate(op: Parameters<AgentHarness['operate']>[0]): Promise<InstanceRecord> {
  await agent.operate(op);
  return agent.core.instances.get(op.uuid)!;
}

async function marker(uuid: string, pattern = READY_MARKER): Promise<string> {
  const line = await waitForConsoleLine(path.join(driver.instanceDir(uuid), 'console.log'), pattern, BOOT_MS);
  expect(line, `no ${pattern} on the console of ${uuid}`).not.toBeNull();
  return line as string;
}

describe("the KVM decision on this host, from its probe and its self-test", () => {
  it('runs the self-test exactly where a booted guest is needed to tell, and judges KVM by all the evidence', () => {
    expect(host.selfTest !== null).toBe(selfTestNotNeeded(config.libvirt, host.probe) === null);
    if (host.selfTest && !host.selfTest.passed) {
      expect(host.selfTest.detail).toMatch(/printed no marker on its serial console within 8 s|could not start a KVM guest/);
    }
    const decision = decideVirtType({ libvirt: config.libvirt, verdict: host.verdict, hostArch: host.probe.arch });
    expect(hostInvariantViolations({ probe: host.probe, selfTest: host.selfTest, verdict: host.verdict, decision })).toEqual([]);
  });

  it('leaves no self-test domain behind', async () => {
    const names = await Promise.all((await connection.listAllDomains()).map(async (d) => { const n = d.name; await d.free(); return n; }));
    expect(names.filter((n) => n.includes('kvm-self-test'))).toEqual([]);
    expect(readdirSync(stateDir).filter((n) => n.startsWith('kvm-self-test-'))).toEqual([]);
  });

  it('with virt_type = kvm (the default) runs the instance under the virt type decided for this host, and the record says why', async () => {
    const decision = decideVirtType({ libvirt: config.libvirt, verdict: host.verdict, hostArch: host.probe.arch });
    const record = await build('decided', { hvType: undefined });
    expect(record.state).toBe('active');
    expect(record.virtType).toBe(decision.effective);
    expect(record.virtTypeReason).toBe(decision.reason);
    for (const reason of host.verdict.reasons) expect(record.virtTypeReason).toContain(reason.message.replace(/\.$/, ''));
    // Under KVM a guest reaches its marker only where KVM really works: the self-test said so.
    expect(await marker(record.uuid)).toMatch(/name=decided /);
    // The record is mirrored in the domain's metadata.
    const domain = await connection.lookupByUuid(record.uuid);
    const meta = await domain!.getMetadata('element', NOVALET_METADATA_URI);
    await domain!.free();
    const [, reason, virtType] = /<virtType reason="([^"]*)">([^<]*)<\/virtType>/.exec(meta ?? "") ?? [];
    expect(virtType).toBe(decision.effective);
    const unescape = (text: string) => text.replace(/&quot;/g, '"').replace(/&apos;/g, "'").replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');
    expect(unescape(reason ?? '')).toBe(decision.reason);
    expect(await driver.state(record.uuid)).toBe('running');
  });
});

describe('instances under TCG', () => {
  it('boots the test guest to its marker by direct kernel boot', async () => {
    const spec = validateInstanceSpec(kernelSpec('direct-1'));
    const launched = await driver.spawn(spec);
    spawned.push(spec.uuid);
    expect(launched.virtType).toBe('qemu');
    const line = await marker(spec.uuid);
    const [, name, model, flags] = READY_MARKER.exec(line) ?? [];
    expect(name).toBe('direct-1');
    expect(model?.length).toBeGreaterThan(0);
    expect(flags).toContain('fpu');
    // The running domain has no USB controller: libvirt took model none rather than adding piix3-uhci.
    const domain = await connection.lookupByUuid(spec.uuid);
    const xml = await domain!.getXmlDesc();
    await domain!.free();
    expect(xml).toMatch(/<controller type='usb' index='0' model='none'/);
    expect(xml).not.toMatch(/uhci|ehci|xhci/);
  });

  it('boots a qcow2 overlay on a cached base image, and reuses the cache', async () => {
    const first = validateInstanceSpec({ name: 'disk-1', vcpus: 1, memoryMiB: 256, image: { source: guest.disk }, virtType: 'qemu' });
    const a = await driver.spawn(first);
    spawned.push(first.uuid);
    expect(a.image?.format).toBe('qcow2');
    expect(existsSync(a.image!.path)).toBe(true);
    expect(await marker(first.uuid, /NOVALET-TEST-GUEST-DISK NOVALET-TG/)).toBeTruthy();
    expect(await marker(first.uuid)).toContain(`name=${first.uuid}`);
    const second = validateInstanceSpec({ name: 'disk-2', vcpus: 1, memoryMiB: 256, image: { source: guest.disk, checksum: `sha256:${a.image!.sha256}` }, virtType: 'qemu' });
    const b = await driver.spawn(second);
    spawned.push(second.uuid);
    expect(b.image?.path).toBe(a.image?.path);
    expect(readdirSync(path.dirname(a.image!.path)).filter((n) => !n.endsWith('.info.json'))).toEqual([a.image!.sha256]);
  });

  it('destroys, powers on, reboots, powers off by ACPI, and deletes with its files gone', async () => {
    const record = await build('ops-1');
    const log = path.join(driver.instanceDir(record.uuid), 'console.log');
    const markers = () => readFileSync(log, 'utf8').split('NOVALET-TEST-GUEST-READY').length - 1;
    await marker(record.uuid);

    expect((await operate({ kind: 'stop', uuid: record.uuid })).state).toBe('stopped');
    expect(await driver.state(record.uuid)).toBe('shutdown');

    expect((await operate({ kind: 'start', uuid: record.uuid })).state).toBe('active');
    expect(await driver.state(record.uuid)).toBe('running');
    await waitFor(() => markers() >= 2);

    await operate({ kind: 'reboot', uuid: record.uuid, type: 'SOFT' });
    await waitFor(() => markers() >= 3);
    await operate({ kind: 'reboot', uuid: record.uuid, type: 'HARD' });
    await waitFor(() => markers() >= 4);

    const stopped = await operate({ kind: 'stop', uuid: record.uuid });
    expect(stopped.state).toBe('stopped');
    expect(readFileSync(log, 'utf8')).toContain('NOVALET-TEST-GUEST-POWEROFF');
    expect(await driver.state(record.uuid)).toBe('shutdown');

    const deleted = await operate({ kind: 'delete', uuid: record.uuid });
    expect(deleted.state).toBe('deleted');
    expect(existsSync(driver.instanceDir(record.uuid))).toBe(false);
    expect(await connection.lookupByUuid(record.uuid)).toBeNull();
    // Four boots under TCG and an ACPI power-off: minutes on a loaded 2-core machine.
  }, 180_000);

  it('notices a guest that powered itself off (lifecycle event) and records it STOPPED', async () => {
    const record = await build('self-off');
    await marker(record.uuid);
    // The power button pressed behind novalet's back, as a guest shutting down by itself.
    const domain = await connection.lookupByUuid(record.uuid);
    await domain!.shutdown();
    await domain!.free();
    const deadline = Date.now() + BOOT_MS;
    let state = agent.core.instances.get(record.uuid)?.state;
    while (state !== 'stopped' && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200));
      state = agent.core.instances.get(record.uuid)?.state;
    }
    expect(state).toBe('stopped');
    expect(readFileSync(path.join(driver.instanceDir(record.uuid), 'console.log'), 'utf8')).toContain('NOVALET-TEST-GUEST-POWEROFF');
  });

  it('starts a guest of another architecture (aarch64) under TCG with qemu-system-aarch64', async () => {
    // No Arm kernel is built here: the guest will not print anything, but its domain must run.
    const spec = validateInstanceSpec({ ...kernelSpec('arm-1'), ramdisk: undefined, cmdline: undefined, imageProperties: { hw_architecture: 'aarch64' } });
    const launched = await driver.spawn(spec);
    spawned.push(spec.uuid);
    expect(launched.virtType).toBe('qemu');
    expect(launched.virtTypeReason).toBe("The guest's architecture aarch64 is not this host's (x86_64), so it runs under TCG software emulation.");
    expect(await driver.state(spec.uuid)).toBe('running');
    const domain = await connection.lookupByUuid(spec.uuid);
    const xml = await domain!.getXmlDesc();
    await domain!.free();
    expect(xml).toContain("<domain type='qemu'");
    expect(xml).toContain('<emulator>/usr/bin/qemu-system-aarch64</emulator>');
    expect(xml).toMatch(/machine='virt/);
    expect(xml).toMatch(/<controller type='usb' index='0' model='none'/);
    await driver.destroy(spec.uuid);
  });

  it('runs two guests at once', async () => {
    const [a, b] = [validateInstanceSpec(kernelSpec('pair-a')), validateInstanceSpec(kernelSpec('pair-b'))];
    spawned.push(a.uuid, b.uuid);
    await Promise.all([driver.spawn(a), driver.spawn(b)]);
    const [ma, mb] = await Promise.all([marker(a.uuid), marker(b.uuid)]);
    expect(ma).toContain('name=pair-a');
    expect(mb).toContain('name=pair-b');
  });
});

describe('bad input leaves nothing behind', () => {
  /** The driver refuses the spec; nothing is left of it; the fault. */
  async function refused(spec: InstanceSpec): Promise<{ code: string; message: string }> {
    const valid = validateInstanceSpec(spec);
    const failure = await driver.spawn(valid).then(
      () => null,
      (err: unknown) => err as { code: string; message: string },
    );
    spawned.push(valid.uuid);
    expect(failure, 'the spawn was refused').not.toBeNull();
    expect(existsSync(driver.instanceDir(valid.uuid))).toBe(false);
    expect(await connection.lookupByUuid(valid.uuid)).toBeNull();
    return failure!;
  }

  it('a name and metadata crafted to break XML boot as an ordinary guest', async () => {
    const evil = `x</name><devices><disk/></devices>"'&]]><!--`;
    const record = await build(evil);
    expect(record.state).toBe('active');
    const domain = await connection.lookupByUuid(record.uuid);
    const xml = await domain!.getXmlDesc();
    await domain!.free();
    expect(xml.match(/<disk /g) ?? []).toEqual([]);
    expect(xml).toContain('&lt;/name&gt;');
  });

  it('a checksum mismatch', async () => {
    const fault = await refused({ name: 'bad-sum', vcpus: 1, memoryMiB: 128, image: { source: guest.disk, checksum: `sha256:${'0'.repeat(64)}` }, virtType: 'qemu' });
    expect(fault.code).toBe('IMAGE_CHECKSUM_MISMATCH');
  });

  it('a missing kernel file', async () => {
    const fault = await refused(kernelSpec('no-kernel', { kernel: '/nonexistent/vmlinuz' }));
    expect(fault.code).toBe('INSTANCE_FILE_MISSING');
    expect(fault.message).toContain('/nonexistent/vmlinuz');
  });

  it('zero or absurd memory or vCPUs are refused before anything is made', () => {
    expect(() => validateInstanceSpec(kernelSpec('zero', { memoryMiB: 0 }))).toThrow(expect.objectContaining({ code: 'INSTANCE_SPEC_INVALID' }));
    expect(() => validateInstanceSpec(kernelSpec('many', { vcpus: 100_000 }))).toThrow(expect.objectContaining({ code: 'INSTANCE_SPEC_INVALID' }));
  });

  it('more vCPUs than QEMU allows for the machine: libvirt refuses and nothing is left', async () => {
    // At the driver: a build of it would be refused by the host's claim first (more vCPUs than the host has).
    const fault = await refused(kernelSpec('too-many-vcpus', { vcpus: 4000 }));
    expect(fault.code).toBe('LIBVIRT_ERROR');
  });

  it('a build the driver refuses ends ERROR with its fault, and nothing is left', async () => {
    // A machine type QEMU does not have: libvirt refuses the domain.
    const uuid = randomUUID();
    await agent.build({
      instance: {
        uuid,
        name: 'no-such-machine',
        flavor: { name: 'm1.test', vcpus: 1, memory_mb: 256, root_gb: 0, extra_specs: {} },
        image: { kernel: { name: path.basename(guest.kernel) }, cmdline: '', properties: { img_hv_type: 'qemu', hw_machine_type: 'no-such-machine' } },
      },
    });
    await agent.core.builds.ended(uuid);
    spawned.push(uuid);
    expect(agent.core.instances.get(uuid)).toMatchObject({ state: 'error', fault: { code: 'LIBVIRT_ERROR' } });
    expect(existsSync(driver.instanceDir(uuid))).toBe(false);
    expect(await connection.lookupByUuid(uuid)).toBeNull();
  });
});

async function waitFor(condition: () => boolean, timeoutMs = BOOT_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 100));
  }
}
