/** A host that cannot run instances at all still serves, disabled with nova's AUTO: reason. */
import { describe, expect, it } from 'vitest';
import { serviceStatus } from '../../agent/service-status.js';
import { loadConfig } from '../../config/load-config.js';
import type { LibvirtSection } from '../../config/novalet-config.js';
import { decideVirtType } from '../../hypervisor/virt-type/decision.js';
import type { KvmVerdict } from '../../messaging/contracts/kvm-verdict.js';

const libvirt = loadConfig({ configFiles: [] }).values.libvirt;
const unusable: KvmVerdict = { usable: false, reasons: [{ code: 'KVM_DEVICE_MISSING', message: '/dev/kvm does not exist.', remedy: 'Load kvm_intel or kvm_amd, or set [libvirt] virt_type = qemu.' }] };

/** The host's decision, as the assembly makes it once (virt-type/known-host.ts). */
const hostDecision = (section: LibvirtSection, verdict: KvmVerdict) => decideVirtType({ libvirt: section, verdict, hostArch: 'x86_64' });

describe('serviceStatus', () => {
  it('KVM usable: up, kvm', () => {
    expect(serviceStatus(hostDecision(libvirt, { usable: true, reasons: [] }))).toMatchObject({ status: { state: 'up', disabled_reason: null }, effective: 'kvm', fellBack: false });
  });

  it('KVM unusable with the fallback: up under qemu, fallen back', () => {
    expect(serviceStatus(hostDecision(libvirt, unusable))).toMatchObject({ status: { state: 'up' }, effective: 'qemu', fellBack: true });
  });

  it("KVM unusable and no fallback: disabled, with nova's AUTO: prefix and libvirt's classic words", () => {
    const judged = serviceStatus(hostDecision({ ...libvirt, fallback_virt_type: '' }, unusable));
    expect(judged.effective).toBeNull();
    expect(judged.status.state).toBe('disabled');
    expect(judged.status.disabled_reason).toMatch(/^AUTO: could not find capabilities for domaintype=kvm/);
    expect(judged.status.disabled_reason).toContain('/dev/kvm does not exist.');
  });
});
