/**
 * Each captured host tree, probed and judged end to end: the facts the probe
 * finds, the exact set of reason codes, and the words operators will read.
 */
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { HostProbe } from '../../hypervisor/host/facts.js';
import type { KvmVerdict } from '../../messaging/contracts/kvm-verdict.js';
import { probeHost } from '../../hypervisor/host/probe.js';
import { judgeKvm } from '../../hypervisor/virt-type/decision.js';
import { describeOuterHypervisor, TCG_FALLBACK_SENTENCE } from '../../hypervisor/virt-type/kvm-reasons.js';
import { loadRecordedKvmIoctls } from '../../hypervisor/host/recorded-kvm-ioctls.js';
import { fixtureRoot } from './fixture-hosts.js';

async function probeFixture(name: string): Promise<{ probe: HostProbe; verdict: KvmVerdict }> {
  const probe = await probeHost({ root: fixtureRoot(name), arch: 'x86_64' });
  return { probe, verdict: judgeKvm({ probe: probe, selfTest: null }) };
}

function codes(verdict: KvmVerdict): string[] {
  return verdict.reasons.map((reason) => reason.code);
}

function reasonText(verdict: KvmVerdict, code: string): { message: string; remedy: string } {
  const found = verdict.reasons.find((reason) => reason.code === code);
  if (found === undefined) throw new Error(`no ${code} among ${codes(verdict).join(', ')}`);
  return found;
}

const HEALTHY_EXTENSIONS = { maxVcpus: 1024, maxVcpuId: 4096, nrMemslots: 32764 };

describe('intel-kvm-nested: bare-metal Intel with kvm_intel nested=Y', () => {
  it('finds vmx, kvm_intel, a working device and no hypervisor beneath; KVM is usable', async () => {
    const { probe, verdict } = await probeFixture('intel-kvm-nested');
    expect(probe.root).toBe(fixtureRoot('intel-kvm-nested'));
    expect(probe.cpu.vendor).toBe('GenuineIntel');
    expect(probe.cpu.logicalCpus).toBe(4);
    expect(probe.kvmModule).toEqual({ name: 'kvm_intel', kvmCorePresent: true, nestedRaw: 'Y', nested: true });
    expect(probe.kvmDevice).toMatchObject({
      path: path.join(fixtureRoot('intel-kvm-nested'), 'dev/kvm'),
      exists: true,
      accessible: true,
      openError: null,
      apiVersion: 12,
      createVm: { ok: true, error: null },
      extensions: { nrVcpus: 4, ...HEALTHY_EXTENSIONS },
    });
    expect(probe.hypervisor).toEqual({
      cpuFlag: false,
      name: null,
      dmiVendor: 'Dell Inc.',
      dmiProduct: 'PowerEdge T140',
      xen: false,
      container: null,
    });
    expect(describeOuterHypervisor(probe)).toBe('bare metal');
    expect(verdict).toEqual({ usable: true, reasons: [] });
  });
});

describe('amd-kvm-nested: bare-metal AMD with kvm_amd nested=1', () => {
  it('finds svm and kvm_amd with nested read from 1; KVM is usable', async () => {
    const { probe, verdict } = await probeFixture('amd-kvm-nested');
    expect(probe.cpu.vendor).toBe('AuthenticAMD');
    expect(probe.cpu.flags).toContain('svm');
    expect(probe.kvmModule).toEqual({ name: 'kvm_amd', kvmCorePresent: true, nestedRaw: '1', nested: true });
    expect(probe.kvmDevice.createVm).toEqual({ ok: true, error: null });
    expect(probe.hypervisor.name).toBeNull();
    expect(verdict.usable).toBe(true);
    expect(verdict.reasons).toEqual([]);
  });
});

describe('vmware-no-vmx: the field report', () => {
  it('sees VMware beneath, no vmx, no /dev/kvm and no KVM module', async () => {
    const { probe } = await probeFixture('vmware-no-vmx');
    expect(probe.hypervisor).toMatchObject({ cpuFlag: true, name: 'VMware', dmiVendor: 'VMware, Inc.', dmiProduct: 'VMware Virtual Platform' });
    expect(probe.kvmDevice).toMatchObject({ exists: false, accessible: false, apiVersion: null, createVm: null });
    expect(probe.kvmModule).toEqual({ name: null, kvmCorePresent: false, nestedRaw: null, nested: null });
    expect(describeOuterHypervisor(probe)).toBe('a virtual machine under VMware');
  });

  it('is unusable because VMware hides VT-x and because /dev/kvm is missing, with VMware\'s remedy', async () => {
    const { verdict } = await probeFixture('vmware-no-vmx');
    expect(verdict.usable).toBe(false);
    expect(codes(verdict)).toEqual(['NO_HW_VIRT_IN_VM', 'KVM_DEVICE_MISSING']);
    const inVm = reasonText(verdict, 'NO_HW_VIRT_IN_VM');
    expect(inVm.message).toContain('the hypervisor beneath (VMware) does not expose hardware virtualization');
    expect(inVm.remedy).toContain('"Expose hardware assisted virtualization to the guest OS"');
    expect(inVm.remedy).not.toContain('Set-VMProcessor');
    const missing = reasonText(verdict, 'KVM_DEVICE_MISSING');
    expect(missing.remedy).toContain('`modprobe kvm_intel`');
    expect(missing.remedy).toContain("modprobe: ERROR: could not insert 'kvm_intel': Operation not supported");
    expect(missing.remedy).toContain('the CPU does not offer Intel VT-x to this system (see NO_HW_VIRT_IN_VM)');
    for (const reason of verdict.reasons) expect(reason.remedy.endsWith(` ${TCG_FALLBACK_SENTENCE}`)).toBe(true);
  });
});

describe('vmware-vmx-exposed: VMware guest with hardware virtualization exposed', () => {
  it('is usable; nested=N in this guest is no reason against KVM', async () => {
    const { probe, verdict } = await probeFixture('vmware-vmx-exposed');
    expect(probe.hypervisor).toMatchObject({ cpuFlag: true, name: 'VMware', dmiProduct: 'VMware7,1' });
    expect(probe.cpu.flags).toContain('vmx');
    expect(probe.kvmModule).toEqual({ name: 'kvm_intel', kvmCorePresent: true, nestedRaw: 'N', nested: false });
    expect(probe.kvmDevice.extensions.nrVcpus).toBe(2);
    expect(verdict).toEqual({ usable: true, reasons: [] });
  });
});

describe('xen-guest: HVM domU without vmx', () => {
  it('names Xen from DMI and /proc/xen, and gives Xen\'s nestedhvm remedy', async () => {
    const { probe, verdict } = await probeFixture('xen-guest');
    expect(probe.hypervisor).toEqual({
      cpuFlag: true,
      name: 'Xen',
      dmiVendor: 'Xen',
      dmiProduct: 'HVM domU',
      xen: true,
      container: null,
    });
    expect(codes(verdict)).toEqual(['NO_HW_VIRT_IN_VM', 'KVM_DEVICE_MISSING']);
    expect(reasonText(verdict, 'NO_HW_VIRT_IN_VM').message).toContain('(Xen)');
    expect(reasonText(verdict, 'NO_HW_VIRT_IN_VM').remedy).toContain('nestedhvm=1');
  });
});

describe('container-no-kvm: docker container on a VT-x host, device not passed in', () => {
  it('blames only the missing device, and says to pass it into the container', async () => {
    const { probe, verdict } = await probeFixture('container-no-kvm');
    expect(probe.hypervisor).toMatchObject({ cpuFlag: false, name: null, container: 'docker' });
    expect(probe.cpu.flags).toContain('vmx');
    expect(probe.kvmDevice.exists).toBe(false);
    expect(describeOuterHypervisor(probe)).toBe('bare metal (inside a docker container)');
    expect(codes(verdict)).toEqual(['KVM_DEVICE_MISSING']);
    const missing = reasonText(verdict, 'KVM_DEVICE_MISSING');
    expect(missing.message).toContain('does not exist in this docker container');
    expect(missing.remedy).toContain('--device /dev/kvm');
  });
});

describe('pvm-host: like the build machines', () => {
  it('finds the hypervisor flag, no vmx/svm, kvm_pvm without a nested parameter, a device that creates VMs', async () => {
    const { probe } = await probeFixture('pvm-host');
    expect(probe.cpu.vendor).toBe('AuthenticAMD');
    expect(probe.cpu.flags).toContain('hypervisor');
    expect(probe.cpu.flags).not.toContain('svm');
    expect(probe.kvmModule).toEqual({ name: 'kvm_pvm', kvmCorePresent: true, nestedRaw: null, nested: null });
    expect(probe.kvmDevice).toMatchObject({ accessible: true, apiVersion: 12, createVm: { ok: true, error: null } });
    expect(probe.hypervisor).toMatchObject({ cpuFlag: true, name: null, dmiVendor: null, dmiProduct: null, xen: false });
    expect(describeOuterHypervisor(probe)).toBe('a virtual machine under an unidentified hypervisor');
  });

  it('is unusable for exactly NO_HW_VIRT_IN_VM and KVM_MODULE_PVM, though every ioctl succeeded', async () => {
    const { verdict } = await probeFixture('pvm-host');
    expect(verdict.usable).toBe(false);
    expect(codes(verdict)).toEqual(['NO_HW_VIRT_IN_VM', 'KVM_MODULE_PVM']);
    const pvm = reasonText(verdict, 'KVM_MODULE_PVM');
    expect(pvm.message).toContain('kvm_pvm, which runs only guests built for PVM (Pagetable-based Virtual Machine)');
    expect(pvm.message).toContain('hang after the firmware');
    expect(pvm.remedy).toBe(`Run ordinary guests on a host whose KVM module is kvm_intel or kvm_amd. ${TCG_FALLBACK_SENTENCE}`);
    // Unknown hypervisor beneath: every remedy we know is offered.
    const inVm = reasonText(verdict, 'NO_HW_VIRT_IN_VM');
    expect(inVm.message).toContain('the hypervisor beneath does not expose');
    for (const phrase of ['Expose hardware assisted virtualization', 'nested=1', 'host-passthrough', '-ExposeVirtualizationExtensions $true', 'nestedhvm=1']) {
      expect(inVm.remedy).toContain(phrase);
    }
  });
});

describe('kvm-no-access: /dev/kvm refuses this user', () => {
  it('reports EACCES and the kvm-group remedy, and nothing else', async () => {
    const { probe, verdict } = await probeFixture('kvm-no-access');
    expect(probe.kvmDevice).toMatchObject({ exists: true, accessible: false, openError: 'EACCES', apiVersion: null, createVm: null });
    expect(codes(verdict)).toEqual(['KVM_DEVICE_NOT_ACCESSIBLE']);
    const denied = reasonText(verdict, 'KVM_DEVICE_NOT_ACCESSIBLE');
    expect(denied.message).toContain('(EACCES)');
    expect(denied.remedy).toContain('`kvm` group');
    expect(denied.remedy).toContain('or run it as root');
  });
});

describe('kvm-device-hidden: a regular file where /dev/kvm should be (no recording: the real kernel answers)', () => {
  it('opens the file, gets ENOTTY for KVM_GET_API_VERSION, and says it is not KVM\'s device', async () => {
    const { probe, verdict } = await probeFixture('kvm-device-hidden');
    expect(probe.kvmDevice).toMatchObject({
      exists: true,
      isCharDevice: false,
      accessible: true,
      apiVersion: null,
      apiVersionError: 'ENOTTY',
      createVm: null,
    });
    expect(codes(verdict)).toEqual(['KVM_DEVICE_NOT_CHAR']);
    expect(reasonText(verdict, 'KVM_DEVICE_NOT_CHAR').message).toContain('is not a character device');
  });
});

describe('recorded ioctls on fixture trees', () => {
  it.each(['intel-kvm-nested', 'amd-kvm-nested', 'vmware-vmx-exposed', 'pvm-host', 'kvm-no-access'])(
    '%s: every fd the probe opened is closed again',
    async (name) => {
      const ioctls = await loadRecordedKvmIoctls(path.join(fixtureRoot(name), 'kvm-ioctl.json'));
      expect(ioctls).not.toBeNull();
      const probe = await probeHost({ root: fixtureRoot(name), arch: 'x86_64', kvmIoctls: ioctls! });
      expect(probe.kvmDevice.exists).toBe(true);
      expect(ioctls!.openFds()).toEqual([]);
    },
  );
});
