/**
 * judgeKvm on hand-made probes: the cases no fixture tree covers, and the
 * rules every reason follows.
 */
import { describe, expect, it } from 'vitest';
import type { HostProbe } from '../../hypervisor/host/facts.js';
import { KVM_REASON_CODES } from '../../messaging/contracts/kvm-verdict.js';
import { judgeKvm, type KvmEvidence } from '../../hypervisor/virt-type/decision.js';
import { describeOuterHypervisor, TCG_FALLBACK_SENTENCE } from '../../hypervisor/virt-type/kvm-reasons.js';

/** A healthy bare-metal Intel KVM host; each test spoils one thing. */
function healthy(): HostProbe {
  return {
    root: '/',
    arch: 'x86_64',
    cpu: {
      vendor: 'GenuineIntel',
      modelName: 'Intel(R) Xeon(R) E-2224 CPU @ 3.40GHz',
      family: 6,
      model: 158,
      stepping: 10,
      logicalCpus: 4,
      flags: ['fpu', 'vmx', 'sse2'],
    },
    kvmDevice: {
      path: '/dev/kvm',
      exists: true,
      isCharDevice: true,
      accessible: true,
      openError: null,
      apiVersion: 12,
      apiVersionError: null,
      createVm: { ok: true, error: null },
      extensions: { nrVcpus: 4, maxVcpus: 1024, maxVcpuId: 4096, nrMemslots: 32764 },
    },
    kvmModule: { name: 'kvm_intel', kvmCorePresent: true, nestedRaw: 'N', nested: false },
    hypervisor: { cpuFlag: false, name: null, dmiVendor: 'Dell Inc.', dmiProduct: 'PowerEdge T140', xen: false, container: null },
  };
}

function withoutHardwareVirtualization(probe: HostProbe): HostProbe {
  return { ...probe, cpu: { ...probe.cpu, flags: probe.cpu.flags.filter((flag) => flag !== 'vmx' && flag !== 'svm') } };
}

function codes(probe: HostProbe): string[] {
  return judgeKvm({ probe: probe, selfTest: null }).reasons.map((reason) => reason.code);
}

describe('judgeKvm', () => {
  it('finds a healthy host usable, with nesting off (nesting is no reason)', () => {
    expect(judgeKvm({ probe: healthy(), selfTest: null })).toEqual({ usable: true, reasons: [] });
  });

  it('NO_HW_VIRT_BARE_METAL: no vmx/svm and no hypervisor flag means the firmware switch', () => {
    const verdict = judgeKvm({ probe: withoutHardwareVirtualization(healthy()), selfTest: null });
    expect(verdict.usable).toBe(false);
    expect(verdict.reasons.map((r) => r.code)).toEqual(['NO_HW_VIRT_BARE_METAL']);
    const [reason] = verdict.reasons;
    expect(reason?.message).toContain('switched off in the firmware or absent');
    expect(reason?.remedy).toContain('Enable Intel VT-x ("Intel Virtualization Technology") in the firmware (BIOS/UEFI) setup');
  });

  it('NO_HW_VIRT_BARE_METAL names AMD-V (SVM) for an AMD CPU', () => {
    const probe = withoutHardwareVirtualization(healthy());
    probe.cpu.vendor = 'AuthenticAMD';
    expect(judgeKvm({ probe: probe, selfTest: null }).reasons[0]?.remedy).toContain('Enable AMD-V ("SVM Mode")');
  });

  it('NO_HW_VIRT_IN_VM gives the remedy of the hypervisor beneath, by name', () => {
    const remedies: Record<string, string> = {
      'QEMU/KVM': 'host-passthrough',
      'Microsoft Hyper-V': 'Set-VMProcessor -VMName <vm> -ExposeVirtualizationExtensions $true',
      VirtualBox: '--nested-hw-virt on',
      'Google Compute Engine': '--enable-nested-virtualization',
    };
    for (const [name, phrase] of Object.entries(remedies)) {
      const probe = withoutHardwareVirtualization(healthy());
      probe.hypervisor = { ...probe.hypervisor, cpuFlag: true, name };
      const [reason] = judgeKvm({ probe: probe, selfTest: null }).reasons;
      expect(reason?.code).toBe('NO_HW_VIRT_IN_VM');
      expect(reason?.message).toContain(`(${name})`);
      expect(reason?.remedy).toContain(phrase);
    }
  });

  it('counts a DMI-named hypervisor as a VM even when the cpu flag is hidden', () => {
    const probe = withoutHardwareVirtualization(healthy());
    probe.hypervisor = { ...probe.hypervisor, name: 'QEMU/KVM' };
    expect(codes(probe)).toEqual(['NO_HW_VIRT_IN_VM']);
  });

  it('KVM_DEVICE_MISSING with the module loaded says to create the node', () => {
    const probe = healthy();
    probe.kvmDevice = { ...probe.kvmDevice, exists: false, isCharDevice: false, accessible: false, apiVersion: null, createVm: null };
    const [reason] = judgeKvm({ probe: probe, selfTest: null }).reasons;
    expect(reason?.code).toBe('KVM_DEVICE_MISSING');
    expect(reason?.message).toContain('although the kvm_intel module is loaded');
    expect(reason?.remedy).toContain('mknod /dev/kvm c 10 232');
  });

  it('KVM_DEVICE_NOT_ACCESSIBLE for EPERM too; KVM_DEVICE_OPEN_FAILED for other errnos', () => {
    const eperm = healthy();
    eperm.kvmDevice = { ...eperm.kvmDevice, accessible: false, openError: 'EPERM', apiVersion: null, createVm: null };
    eperm.hypervisor.container = 'podman';
    const [denied] = judgeKvm({ probe: eperm, selfTest: null }).reasons;
    expect(denied?.code).toBe('KVM_DEVICE_NOT_ACCESSIBLE');
    expect(denied?.remedy).toContain('In a podman container');

    const enxio = healthy();
    enxio.kvmDevice = { ...enxio.kvmDevice, accessible: false, openError: 'ENXIO', apiVersion: null, createVm: null };
    const [failed] = judgeKvm({ probe: enxio, selfTest: null }).reasons;
    expect(failed?.code).toBe('KVM_DEVICE_OPEN_FAILED');
    expect(failed?.message).toContain('failed with ENXIO');
  });

  it('KVM_API_VERSION when the API is not 12, or the ioctl failed on a character device', () => {
    const eleven = healthy();
    eleven.kvmDevice = { ...eleven.kvmDevice, apiVersion: 11, createVm: null };
    const [wrong] = judgeKvm({ probe: eleven, selfTest: null }).reasons;
    expect(wrong?.code).toBe('KVM_API_VERSION');
    expect(wrong?.message).toContain('returned 11, not 12');

    const failing = healthy();
    failing.kvmDevice = { ...failing.kvmDevice, apiVersion: null, apiVersionError: 'EINVAL', createVm: null };
    expect(judgeKvm({ probe: failing, selfTest: null }).reasons[0]?.message).toContain('failed with EINVAL, not 12');
  });

  it('KVM_CREATE_VM_FAILED names the errno', () => {
    const probe = healthy();
    probe.kvmDevice = { ...probe.kvmDevice, createVm: { ok: false, error: 'EBUSY' } };
    const verdict = judgeKvm({ probe: probe, selfTest: null });
    expect(verdict.reasons.map((r) => r.code)).toEqual(['KVM_CREATE_VM_FAILED']);
    expect(verdict.reasons[0]?.message).toContain('KVM_CREATE_VM on /dev/kvm failed with EBUSY');
  });

  it('KVM_NO_VENDOR_MODULE when a working device has no known vendor module behind it, while sysfs shows kvm', () => {
    const probe = healthy();
    probe.kvmModule = { name: null, kvmCorePresent: true, nestedRaw: null, nested: null };
    const verdict = judgeKvm({ probe: probe, selfTest: null });
    expect(verdict.usable).toBe(false);
    expect(verdict.reasons.map((r) => r.code)).toEqual(['KVM_NO_VENDOR_MODULE']);
  });

  it('says nothing about the module when /sys/module shows no kvm at all (sysfs hidden)', () => {
    const probe = healthy();
    probe.kvmModule = { name: null, kvmCorePresent: false, nestedRaw: null, nested: null };
    expect(judgeKvm({ probe: probe, selfTest: null })).toEqual({ usable: true, reasons: [] });
  });

  it('does not look for vmx/svm or vendor modules on aarch64', () => {
    const probe = healthy();
    probe.arch = 'aarch64';
    probe.cpu = { ...probe.cpu, vendor: 'ARM', flags: ['fp', 'asimd'] };
    probe.kvmModule = { name: null, kvmCorePresent: true, nestedRaw: null, nested: null };
    expect(judgeKvm({ probe: probe, selfTest: null })).toEqual({ usable: true, reasons: [] });
  });

  it('gives every applicable reason, not just the first', () => {
    const probe = withoutHardwareVirtualization(healthy());
    probe.hypervisor.cpuFlag = true;
    probe.kvmModule = { name: 'kvm_pvm', kvmCorePresent: true, nestedRaw: null, nested: null };
    probe.kvmDevice = { ...probe.kvmDevice, createVm: { ok: false, error: 'ENOMEM' } };
    expect(codes(probe)).toEqual(['NO_HW_VIRT_IN_VM', 'KVM_CREATE_VM_FAILED', 'KVM_MODULE_PVM']);
  });

  it('every reason is a known code with a sentence, and every remedy ends with the TCG fallback', () => {
    const broken = withoutHardwareVirtualization(healthy());
    const probes: HostProbe[] = [broken];
    for (const device of [
      { exists: false, accessible: false },
      { accessible: false, openError: 'EACCES' },
      { accessible: false, openError: 'ENODEV' },
      { isCharDevice: false, apiVersion: null, apiVersionError: 'ENOTTY' },
      { apiVersion: 13 },
      { createVm: { ok: false, error: 'ENOMEM' } },
    ]) {
      const probe = healthy();
      probe.kvmDevice = { ...probe.kvmDevice, ...device };
      probes.push(probe);
    }
    const pvm = healthy();
    pvm.kvmModule.name = 'kvm_pvm';
    const inVm = withoutHardwareVirtualization(healthy());
    inVm.hypervisor.cpuFlag = true;
    const unknownModule = healthy();
    unknownModule.kvmModule = { name: null, kvmCorePresent: true, nestedRaw: null, nested: null };
    probes.push(pvm, inVm, unknownModule);

    const evidence: KvmEvidence[] = probes.map((probe) => ({ probe, selfTest: null }));
    // The guests of a host that looks sound hang: the self-test's reason.
    evidence.push({ probe: healthy(), selfTest: { passed: false, detail: 'the test guest printed no marker within 20 s', durationMs: 20_000 } });
    const seen = new Set<string>();
    for (const each of evidence) {
      for (const reason of judgeKvm(each).reasons) {
        seen.add(reason.code);
        expect(KVM_REASON_CODES).toContain(reason.code);
        expect(reason.message).toMatch(/^[A-Z/`].*\.$/);
        expect(reason.remedy.endsWith(` ${TCG_FALLBACK_SENTENCE}`)).toBe(true);
        expect(reason.remedy.length).toBeGreaterThan(TCG_FALLBACK_SENTENCE.length + 20);
      }
    }
    expect([...seen].sort()).toEqual([...KVM_REASON_CODES].sort());
  });

  it('TCG_FALLBACK_SENTENCE names the option and the fallback', () => {
    expect(TCG_FALLBACK_SENTENCE).toBe(
      'Or run instances under TCG software emulation: set [libvirt] virt_type = qemu (novalet does this by itself while [libvirt] fallback_virt_type = qemu).',
    );
  });
});

describe('describeOuterHypervisor', () => {
  it('phrases what this host is', () => {
    const probe = healthy();
    expect(describeOuterHypervisor(probe)).toBe('bare metal');
    probe.hypervisor = { ...probe.hypervisor, cpuFlag: true, name: 'Microsoft Hyper-V', container: 'lxc' };
    expect(describeOuterHypervisor(probe)).toBe('a virtual machine under Microsoft Hyper-V (inside a lxc container)');
  });
});
