/**
 * KVM or TCG, and why: the one place it is decided. The verdict takes all
 * its evidence at once (the host probe and the KVM self-test); the virt
 * type of the host and of each instance follows from the verdict and the
 * configuration; everything else asks these functions.
 *
 * Judgement calls, on purpose:
 * - Nesting (`nested` of kvm_intel/kvm_amd) is never a reason: it only
 *   matters to guests of this host that want to run KVM themselves.
 * - vmx/svm are only looked for on x86; other architectures show their
 *   virtualization support by having a working /dev/kvm.
 * - KVM_NO_VENDOR_MODULE is a reason (not only information) when, on x86,
 *   /dev/kvm answers and creates VMs, /sys/module shows the generic `kvm`
 *   module, and yet none of kvm_intel, kvm_amd, kvm_pvm is there. That is an
 *   implementation of KVM novalet does not know — kvm_pvm passed every
 *   ioctl-level check too, and its guests hang — so it is not trusted.
 *   When /sys/module shows no `kvm` at all (sysfs hidden, as in some
 *   containers) nothing can be told about the module and no reason is given.
 * - KVM_DEVICE_NOT_CHAR replaces KVM_API_VERSION when the node is not a
 *   character device and the API ioctl failed (a regular file bind-mounted
 *   over /dev/kvm, say): the failed ioctl is only a consequence.
 * - A self-test that booted a guest under KVM and saw no marker outweighs
 *   every ioctl: KVM_SELFTEST_FAILED.
 * - A guest of another architecture always runs under TCG; an image that
 *   says img_hv_type = kvm gets KVM or fails (falling back would break what
 *   the image asked for).
 */
import type { LibvirtSection } from '../../config/novalet-config.js';
import type { EffectiveVirtType, KvmReason, KvmReasonCode, KvmVerdict } from '../../messaging/contracts/kvm-verdict.js';
import { hardwareVirtualizationFlag, isX86 } from '../host/cpuinfo.js';
import type { HostProbe } from '../host/facts.js';
import { kvmDeviceAnswers } from '../host/kvm-device.js';
import { KVM_STABLE_API_VERSION } from '../host/kvm-ioctls.js';
import * as reasons from './kvm-reasons.js';
import type { SelfTestOutcome } from './self-test.js';

export type { EffectiveVirtType } from '../../messaging/contracts/kvm-verdict.js';

/** Everything the verdict is judged on. */
export interface KvmEvidence {
  probe: HostProbe;
  /** This boot's KVM self-test; null when it has not run (or cannot: no KVM to test). */
  selfTest: SelfTestOutcome | null;
}

/** Is KVM usable here, and if not, every reason that applies. */
export function judgeKvm({ probe, selfTest }: KvmEvidence): KvmVerdict {
  const found: KvmReason[] = [];
  const x86 = isX86(probe.arch);
  const device = probe.kvmDevice;

  let hardwareReason: KvmReasonCode | null = null;
  if (x86 && hardwareVirtualizationFlag(probe.cpu) === null) {
    const hardware = reasons.isVirtualMachine(probe) ? reasons.noHardwareVirtualizationInVm(probe) : reasons.noHardwareVirtualizationOnBareMetal(probe);
    hardwareReason = hardware.code;
    found.push(hardware);
  }

  if (!device.exists) {
    found.push(reasons.deviceMissing(probe, hardwareReason));
  } else if (!device.accessible) {
    const errno = device.openError ?? 'an error';
    found.push(errno === 'EACCES' || errno === 'EPERM' ? reasons.deviceNotAccessible(probe, errno) : reasons.deviceOpenFailed(probe, errno));
  } else if (device.apiVersion !== KVM_STABLE_API_VERSION) {
    found.push(!device.isCharDevice && device.apiVersion === null ? reasons.deviceNotChar(probe) : reasons.apiVersionWrong(probe));
  } else if (device.createVm !== null && !device.createVm.ok) {
    found.push(reasons.createVmFailed(probe, device.createVm.error ?? 'an error'));
  }

  if (probe.kvmModule.name === 'kvm_pvm') found.push(reasons.pvmModule());
  if (x86 && kvmDeviceAnswers(device) && probe.kvmModule.name === null && probe.kvmModule.kvmCorePresent) {
    found.push(reasons.noVendorModule(probe));
  }
  if (selfTest !== null && !selfTest.passed) found.push(reasons.selfTestFailed(selfTest));

  return { usable: found.length === 0, reasons: found };
}

/**
 * Whether a booted guest is needed to tell: the configuration wants KVM and
 * /dev/kvm answers at the ioctl level, where ioctls alone cannot show that
 * ordinary guests run. null when the self-test applies, else why it does not (a phrase).
 */
export function selfTestNotNeeded(libvirt: Pick<LibvirtSection, 'virt_type'>, probe: HostProbe): string | null {
  if (libvirt.virt_type !== 'kvm') return `not needed: virt_type = ${libvirt.virt_type}`;
  if (!kvmDeviceAnswers(probe.kvmDevice)) return 'not needed: /dev/kvm does not answer as KVM, so there is no KVM to test';
  return null;
}

/** libvirt's classic words for "no KVM here", which operators search for. */
export const KVM_MISSING_WORDS = 'could not find capabilities for domaintype=kvm';

/** "a; b; c" of the verdict's reasons, for one-line summaries. */
export function summarizeVerdict(verdict: KvmVerdict): string {
  return verdict.reasons.map((r) => r.message.replace(/\.$/, '')).join('; ');
}

/**
 * The fault a KVM build gets when KVM is unusable and no fallback is set: it
 * starts with libvirt's words and goes on with the diagnosis and the remedy.
 */
export function kvmUnavailableFault(verdict: KvmVerdict): string {
  const remedies = [...new Set(verdict.reasons.map((r) => r.remedy))].join(' ');
  return `${KVM_MISSING_WORDS}: KVM is not usable on this host: ${summarizeVerdict(verdict)}. ${remedies}`;
}

/** The virt types instances of the host's architecture can have here: qemu always, kvm where KVM is usable. */
export function availableVirtTypes(verdict: KvmVerdict): EffectiveVirtType[] {
  return verdict.usable ? ['qemu', 'kvm'] : ['qemu'];
}

export interface VirtTypeQuestion {
  /** `[libvirt] virt_type` and `fallback_virt_type`. */
  libvirt: Pick<LibvirtSection, 'virt_type' | 'fallback_virt_type'>;
  verdict: KvmVerdict;
  hostArch: string;
  /** The guest's architecture; the host's when the question is about the host. */
  guestArch?: string | undefined;
  /** `novalet run --virt-type`: stands in for [libvirt] virt_type for this instance. */
  requested?: EffectiveVirtType | undefined;
  /** nova's img_hv_type image property: what the image needs; not subject to the fallback. */
  imageHvType?: string | undefined;
}

export interface VirtTypeDecision {
  /** `[libvirt] virt_type` as configured (or as requested for the instance). */
  configured: LibvirtSection['virt_type'];
  /** What the instance (or the host's instances) run with; null when it cannot run. */
  effective: EffectiveVirtType | null;
  /** True when effective comes from `fallback_virt_type` because KVM is unusable. */
  fellBack: boolean;
  /** Why, as a sentence an operator can act on; when effective is null, the fault. */
  reason: string;
}

const decided = (configured: LibvirtSection['virt_type'], effective: EffectiveVirtType | null, reason: string, fellBack = false): VirtTypeDecision => ({
  configured,
  effective,
  fellBack,
  reason,
});

/** The virt type of the host's instances, or of one instance (its architecture, image and request), and why. */
export function decideVirtType(question: VirtTypeQuestion): VirtTypeDecision {
  const { verdict, hostArch } = question;
  const guestArch = question.guestArch ?? hostArch;
  const configured = question.requested ?? question.libvirt.virt_type;
  if (guestArch !== hostArch) {
    if (question.imageHvType === 'kvm') {
      return decided(configured, null, `${KVM_MISSING_WORDS}: a ${guestArch} guest cannot run under KVM on this ${hostArch} host. Remove img_hv_type = kvm from the image, or run it on a ${guestArch} host.`);
    }
    return decided(configured, 'qemu', `The guest's architecture ${guestArch} is not this host's (${hostArch}), so it runs under TCG software emulation.`);
  }
  if (question.imageHvType === 'qemu') return decided(configured, 'qemu', 'The image asks for img_hv_type = qemu: TCG software emulation.');
  if (question.imageHvType === 'kvm') {
    if (verdict.usable) return decided(configured, 'kvm', 'The image asks for img_hv_type = kvm, and KVM is usable on this host.');
    return decided(configured, null, kvmUnavailableFault(verdict));
  }
  if (configured === 'qemu') return decided(configured, 'qemu', '[libvirt] virt_type = qemu: TCG software emulation, as configured.');
  if (configured !== 'kvm') return decided(configured, null, `[libvirt] virt_type = ${configured} is not something novalet runs; set it to kvm or qemu.`);
  if (verdict.usable) return decided(configured, 'kvm', 'KVM is usable on this host.');
  if (question.libvirt.fallback_virt_type === 'qemu') {
    return decided(
      configured,
      'qemu',
      `KVM is not usable on this host (${summarizeVerdict(verdict)}), so instances fall back to TCG software emulation ([libvirt] fallback_virt_type = qemu).`,
      true,
    );
  }
  return decided(configured, null, kvmUnavailableFault(verdict));
}
