/**
 * The machine these tests run on, probed for real (root '/', koffi ioctls).
 * ENVIRONMENT.md describes it: a guest with the hypervisor flag and no
 * vmx/svm, whose /dev/kvm answers (API 12, KVM_CREATE_VM works) but whose
 * KVM module is kvm_pvm. Tests run as root in CI.
 */
import { readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { probeHost } from '../../hypervisor/host/probe.js';
import { koffiKvmIoctls } from '../../hypervisor/host/koffi-kvm-ioctls.js';
import { probeKvmDevice } from '../../hypervisor/host/kvm-device.js';
import { KVM_GET_API_VERSION } from '../../hypervisor/host/kvm-ioctls.js';
import { judgeKvm } from '../../hypervisor/virt-type/kvm-reasons.js';

function openFds(): string[] {
  return readdirSync('/proc/self/fd').sort();
}

describe('this build machine', () => {
  it('is a guest without vmx/svm whose kvm_pvm /dev/kvm speaks API 12 and creates VMs', async () => {
    const probe = await probeHost();
    expect(probe.root).toBe('/');
    expect(probe.arch).toBe('x86_64');
    expect(probe.cpu.logicalCpus).toBeGreaterThan(0);
    expect(probe.cpu.flags).toContain('hypervisor');
    expect(probe.cpu.flags).not.toContain('vmx');
    expect(probe.cpu.flags).not.toContain('svm');
    expect(probe.hypervisor.cpuFlag).toBe(true);
    expect(probe.hypervisor.dmiVendor).toBeNull();
    expect(probe.kvmModule).toMatchObject({ name: 'kvm_pvm', kvmCorePresent: true, nested: null });
    expect(probe.kvmDevice).toMatchObject({
      path: '/dev/kvm',
      exists: true,
      isCharDevice: true,
      accessible: true,
      openError: null,
      apiVersion: 12,
      createVm: { ok: true, error: null },
    });
    expect(probe.kvmDevice.extensions.nrVcpus).toBeGreaterThan(0);
    expect(probe.kvmDevice.extensions.maxVcpus).toBeGreaterThanOrEqual(probe.kvmDevice.extensions.nrVcpus!);
    expect(probe.kvmDevice.extensions.nrMemslots).toBeGreaterThan(0);
  });

  it('judges KVM unusable here, for NO_HW_VIRT_IN_VM and KVM_MODULE_PVM', async () => {
    const verdict = judgeKvm(await probeHost({ root: '/' }));
    expect(verdict.usable).toBe(false);
    const codes = verdict.reasons.map((reason) => reason.code);
    expect(codes).toContain('NO_HW_VIRT_IN_VM');
    expect(codes).toContain('KVM_MODULE_PVM');
    expect(codes).not.toContain('KVM_DEVICE_MISSING');
  });

  it('answers the same on every probe (KVM_GET_API_VERSION gets a zero argument, not a leftover register)', async () => {
    for (let round = 0; round < 3; round += 1) {
      const facts = await probeKvmDevice('/dev/kvm', koffiKvmIoctls);
      expect(facts).toMatchObject({ apiVersion: 12, apiVersionError: null, createVm: { ok: true, error: null } });
    }
  });

  it('closes every fd the koffi path opens: the device and the VM', async () => {
    await probeKvmDevice('/dev/kvm', koffiKvmIoctls); // loads koffi and libc first
    const before = openFds();
    for (let round = 0; round < 5; round += 1) {
      const facts = await probeKvmDevice('/dev/kvm', koffiKvmIoctls);
      expect(facts.createVm).toEqual({ ok: true, error: null });
    }
    expect(openFds()).toEqual(before);
  });

  it('turns a failed ioctl into its errno name', () => {
    expect(koffiKvmIoctls.ioctl(987_654, KVM_GET_API_VERSION)).toEqual({ ok: false, errno: 'EBADF' });
    expect(koffiKvmIoctls.open('/nonexistent/dev/kvm')).toEqual({ ok: false, errno: 'ENOENT' });
  });
});
