import { describe, expect, it } from 'vitest';
import type { LibvirtSection } from '../../config/novalet-config.js';
import { parseConfigText } from '../../config/load-config.js';
import type { KvmVerdict } from '../../messaging/contracts/kvm-verdict.js';
import { isLibvirtKvmMissing, kvmFaultFromLibvirt } from '../../hypervisor/virt-type/kvm-fault.js';
import { probeHost } from '../../hypervisor/host/probe.js';
import { decideVirtType, judgeKvm } from '../../hypervisor/virt-type/decision.js';
import { fixtureRoot } from './fixture-hosts.js';

const LIBVIRT: LibvirtSection = { ...parseConfigText('', 'defaults.conf').values.libvirt, virt_type: 'kvm' };

async function verdictOf(host: string): Promise<KvmVerdict> {
  return judgeKvm({ probe: await probeHost({ root: fixtureRoot(host), arch: 'x86_64' }), selfTest: null });
}

describe('virt type per instance', () => {
  it('uses KVM for a guest of the host\'s architecture where KVM is usable', async () => {
    const verdict = await verdictOf('intel-kvm-nested');
    expect(decideVirtType({ libvirt: LIBVIRT, verdict, hostArch: 'x86_64', guestArch: 'x86_64' })).toEqual({
      configured: 'kvm',
      effective: 'kvm',
      fellBack: false,
      reason: 'KVM is usable on this host.',
    });
  });

  it('runs a guest of another architecture under TCG even where KVM is usable', async () => {
    const verdict = await verdictOf('intel-kvm-nested');
    const got = decideVirtType({ libvirt: LIBVIRT, verdict, hostArch: 'x86_64', guestArch: 'aarch64' });
    expect(got).toEqual({ configured: 'kvm', effective: 'qemu', fellBack: false, reason: "The guest's architecture aarch64 is not this host's (x86_64), so it runs under TCG software emulation." });
  });

  it('falls back to TCG with the reason when KVM is unusable', async () => {
    const verdict = await verdictOf('pvm-host');
    const got = decideVirtType({ libvirt: LIBVIRT, verdict, hostArch: 'x86_64', guestArch: 'x86_64' });
    expect(got).toMatchObject({ effective: 'qemu', fellBack: true });
    expect(got.reason).toContain('kvm_pvm');
    expect(got.reason).toContain('fallback_virt_type = qemu');
  });

  it('fails with the classic fault when KVM is unusable and the fallback is off', async () => {
    const verdict = await verdictOf('vmware-no-vmx');
    const got = decideVirtType({ libvirt: { ...LIBVIRT, fallback_virt_type: '' }, verdict, hostArch: 'x86_64', guestArch: 'x86_64' });
    expect(got.effective).toBeNull();
    expect(got.reason).toMatch(/^could not find capabilities for domaintype=kvm: KVM is not usable on this host: /);
    expect(got.reason).toContain('Expose hardware assisted virtualization to the guest OS');
  });

  it('honours img_hv_type: qemu always, kvm without fallback', async () => {
    const pvm = await verdictOf('pvm-host');
    expect(decideVirtType({ libvirt: LIBVIRT, verdict: pvm, hostArch: 'x86_64', guestArch: 'x86_64', imageHvType: 'qemu' })).toMatchObject({ effective: 'qemu' });
    const needsKvm = decideVirtType({ libvirt: LIBVIRT, verdict: pvm, hostArch: 'x86_64', guestArch: 'x86_64', imageHvType: 'kvm' });
    expect(needsKvm.effective).toBeNull();
    expect(needsKvm.reason).toMatch(/^could not find capabilities for domaintype=kvm/);
    const foreign = decideVirtType({ libvirt: LIBVIRT, verdict: await verdictOf('intel-kvm-nested'), hostArch: 'x86_64', guestArch: 'aarch64', imageHvType: 'kvm' });
    expect(foreign.effective).toBeNull();
    expect(foreign.reason).toContain('a aarch64 guest cannot run under KVM on this x86_64 host');
  });

  it('lets a requested virt type stand in for [libvirt] virt_type', async () => {
    const intel = await verdictOf('intel-kvm-nested');
    expect(decideVirtType({ libvirt: LIBVIRT, verdict: intel, hostArch: 'x86_64', guestArch: 'x86_64', requested: 'qemu' })).toMatchObject({ effective: 'qemu', fellBack: false });
  });

  it('answers for the host as a whole when no guest architecture is given', async () => {
    const pvm = await verdictOf('pvm-host');
    expect(decideVirtType({ libvirt: LIBVIRT, verdict: pvm, hostArch: 'x86_64' })).toEqual(decideVirtType({ libvirt: LIBVIRT, verdict: pvm, hostArch: 'x86_64', guestArch: 'x86_64' }));
    expect(decideVirtType({ libvirt: { ...LIBVIRT, virt_type: 'qemu' }, verdict: pvm, hostArch: 'x86_64' })).toEqual({
      configured: 'qemu',
      effective: 'qemu',
      fellBack: false,
      reason: '[libvirt] virt_type = qemu: TCG software emulation, as configured.',
    });
  });
});

describe("libvirt's words for missing KVM", () => {
  it('recognises the classic and the libvirt 9 wording, and nothing else', () => {
    expect(isLibvirtKvmMissing('invalid argument: could not find capabilities for domaintype=kvm ')).toBe(true);
    expect(isLibvirtKvmMissing("unsupported configuration: Emulator '/usr/bin/qemu-system-x86_64' does not support virt type 'kvm'")).toBe(true);
    expect(isLibvirtKvmMissing('invalid argument: could not get preferred machine for /usr/bin/qemu-system-x86_64 type=kvm')).toBe(true);
    expect(isLibvirtKvmMissing("invalid argument: the accel 'kvm' is not supported by '/usr/bin/qemu-system-x86_64' on this host")).toBe(true);
    expect(isLibvirtKvmMissing("invalid argument: the accel 'tcg' is not supported by '/usr/bin/qemu-system-x86_64' on this host")).toBe(false);
    expect(isLibvirtKvmMissing("unsupported configuration: Emulator '/usr/bin/qemu-system-x86_64' does not support virt type 'qemu'")).toBe(false);
    expect(isLibvirtKvmMissing('Domain not found')).toBe(false);
  });

  it('maps libvirt\'s refusal to the same fault, keeping libvirt\'s words', async () => {
    const err = kvmFaultFromLibvirt("unsupported configuration: Emulator '/usr/bin/qemu-system-x86_64' does not support virt type 'kvm'", await verdictOf('container-no-kvm'));
    expect(err.code).toBe('KVM_UNAVAILABLE');
    expect(err.message).toMatch(/^could not find capabilities for domaintype=kvm: KVM is not usable on this host: /);
    expect(err.message).toContain("libvirt said: unsupported configuration: Emulator '/usr/bin/qemu-system-x86_64' does not support virt type 'kvm'");
  });
});
