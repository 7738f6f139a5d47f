import type { LibvirtSection } from '../../config/novalet-config.js';
import type { KvmVerdict } from '../host/facts.js';

/** The virt types novalet can run instances with: both through QEMU. */
export type EffectiveVirtType = 'kvm' | 'qemu';

export interface VirtTypeDecision {
  /** `[libvirt] virt_type` as configured. */
  configured: LibvirtSection['virt_type'];
  /** What instances of the host's architecture will run with; null when none can run. */
  effective: EffectiveVirtType | null;
  /** True when effective comes from `fallback_virt_type` because KVM is unusable. */
  fellBack: boolean;
  /** Why, as a sentence an operator can act on. */
  reason: string;
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

export function decideVirtType(libvirt: LibvirtSection, verdict: KvmVerdict): VirtTypeDecision {
  const configured = libvirt.virt_type;
  if (configured === 'qemu') {
    return {
      configured,
      effective: 'qemu',
      fellBack: false,
      reason: '[libvirt] virt_type = qemu: TCG software emulation, as configured.',
    };
  }
  if (configured !== 'kvm') {
    return {
      configured,
      effective: null,
      fellBack: false,
      reason: `[libvirt] virt_type = ${configured} is not something novalet runs; set it to kvm or qemu.`,
    };
  }
  if (verdict.usable) {
    return { configured, effective: 'kvm', fellBack: false, reason: 'KVM is usable on this host.' };
  }
  if (libvirt.fallback_virt_type === 'qemu') {
    return {
      configured,
      effective: 'qemu',
      fellBack: true,
      reason:
        `KVM is not usable on this host (${summarizeVerdict(verdict)}), ` +
        'so instances fall back to TCG software emulation ([libvirt] fallback_virt_type = qemu).',
    };
  }
  return { configured, effective: null, fellBack: false, reason: kvmUnavailableFault(verdict) };
}

export interface InstanceVirtTypeInput {
  libvirt: LibvirtSection;
  verdict: KvmVerdict;
  hostArch: string;
  guestArch: string;
  /** `novalet run --virt-type`: stands in for [libvirt] virt_type for this instance. */
  requested?: 'kvm' | 'qemu' | undefined;
  /** nova's img_hv_type image property: what the image needs; not subject to the fallback. */
  imageHvType?: string | undefined;
}

export interface InstanceVirtType {
  virtType: EffectiveVirtType;
  reason: string;
  /** True when TCG stands in for a KVM that is not usable (`fallback_virt_type`). */
  fellBack: boolean;
}

/**
 * The virt type one instance runs with, and why. A guest of another
 * architecture always runs under TCG. An image that says img_hv_type = kvm
 * gets KVM or fails: falling back would break what the image asked for.
 * Returns the fault's text in `fault` when the instance cannot run.
 */
export function decideInstanceVirtType(input: InstanceVirtTypeInput): InstanceVirtType | { fault: string } {
  const { hostArch, guestArch, verdict } = input;
  if (guestArch !== hostArch) {
    if (input.imageHvType === 'kvm') {
      return { fault: `${KVM_MISSING_WORDS}: a ${guestArch} guest cannot run under KVM on this ${hostArch} host. Remove img_hv_type = kvm from the image, or run it on a ${guestArch} host.` };
    }
    return { virtType: 'qemu', fellBack: false, reason: `The guest's architecture ${guestArch} is not this host's (${hostArch}), so it runs under TCG software emulation.` };
  }
  if (input.imageHvType === 'qemu') {
    return { virtType: 'qemu', fellBack: false, reason: 'The image asks for img_hv_type = qemu: TCG software emulation.' };
  }
  if (input.imageHvType === 'kvm') {
    if (verdict.usable) return { virtType: 'kvm', fellBack: false, reason: 'The image asks for img_hv_type = kvm, and KVM is usable on this host.' };
    return { fault: kvmUnavailableFault(verdict) };
  }
  const libvirt = input.requested ? { ...input.libvirt, virt_type: input.requested } : input.libvirt;
  const decision = decideVirtType(libvirt, verdict);
  if (decision.effective === null) return { fault: decision.reason };
  return { virtType: decision.effective, reason: decision.reason, fellBack: decision.fellBack };
}
