/**
 * The machine these tests run on, probed for real (root '/', koffi ioctls).
 * Whatever host that is — bare metal with working KVM, a VM with or without
 * nested virtualization, a PVM guest like the build machines — the probe must
 * agree with what the kernel shows by other means, and the verdict must be
 * what that evidence gives (test/support/host-invariants.ts). Tests run as
 * root in CI.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import os from 'node:os';
import { describe, expect, it } from 'vitest';
import { parseConfigText } from '../../config/load-config.js';
import { probeHost } from '../../hypervisor/host/probe.js';
import { koffiKvmIoctls } from '../../hypervisor/host/koffi-kvm-ioctls.js';
import { probeKvmDevice } from '../../hypervisor/host/kvm-device.js';
import { KVM_GET_API_VERSION, KVM_STABLE_API_VERSION } from '../../hypervisor/host/kvm-ioctls.js';
import { decideVirtType, judgeKvm } from '../../hypervisor/virt-type/decision.js';
import { hostInvariantViolations } from '../support/host-invariants.js';

function openFds(): string[] {
  return readdirSync('/proc/self/fd').sort();
}

describe('this machine', () => {
  it('is probed as the kernel shows it by other means', async () => {
    const probe = await probeHost();
    expect(probe.root).toBe('/');
    expect(probe.arch).toBe(os.machine());
    expect(probe.cpu.logicalCpus).toBe(os.cpus().length);
    expect(probe.hypervisor.cpuFlag).toBe(probe.cpu.flags.includes('hypervisor'));
    const device = probe.kvmDevice;
    expect(device.exists).toBe(existsSync('/dev/kvm'));
    if (device.exists) expect(device.isCharDevice).toBe(statSync('/dev/kvm').isCharacterDevice());
    // A character device this process (root) opens is KVM's, and the stable API is all Linux has shipped.
    if (device.accessible && device.isCharDevice) {
      expect(device.apiVersion).toBe(KVM_STABLE_API_VERSION);
      expect(device.extensions.nrVcpus).toBeGreaterThan(0);
      expect(device.extensions.maxVcpus).toBeGreaterThanOrEqual(device.extensions.nrVcpus!);
    }
    for (const module of ['kvm_intel', 'kvm_amd', 'kvm_pvm'] as const) {
      if (probe.kvmModule.name === module) expect(existsSync(`/sys/module/${module}`)).toBe(true);
    }
    if (probe.kvmModule.name === null) expect(['kvm_intel', 'kvm_amd', 'kvm_pvm'].some((m) => existsSync(`/sys/module/${m}`))).toBe(false);
  });

  it('gets the verdict and the virt type its evidence gives (no self-test yet)', async () => {
    const probe = await probeHost({ root: '/' });
    const verdict = judgeKvm({ probe, selfTest: null });
    const decision = decideVirtType({ libvirt: parseConfigText('', 'defaults.conf').values.libvirt, verdict, hostArch: probe.arch });
    expect(hostInvariantViolations({ probe, selfTest: null, verdict, decision })).toEqual([]);
  });

  it('answers the same on every probe (KVM_GET_API_VERSION gets a zero argument, not a leftover register)', async () => {
    const first = await probeKvmDevice('/dev/kvm', koffiKvmIoctls);
    for (let round = 0; round < 3; round += 1) {
      expect(await probeKvmDevice('/dev/kvm', koffiKvmIoctls)).toEqual(first);
    }
  });

  it('closes every fd the koffi path opens: the device and the VM', async () => {
    await probeKvmDevice('/dev/kvm', koffiKvmIoctls); // loads koffi and libc first
    const before = openFds();
    for (let round = 0; round < 5; round += 1) await probeKvmDevice('/dev/kvm', koffiKvmIoctls);
    expect(openFds()).toEqual(before);
  });

  it('turns a failed ioctl into its errno name', () => {
    expect(koffiKvmIoctls.ioctl(987_654, KVM_GET_API_VERSION)).toEqual({ ok: false, errno: 'EBADF' });
    expect(koffiKvmIoctls.open('/nonexistent/dev/kvm')).toEqual({ ok: false, errno: 'ENOENT' });
  });
});
