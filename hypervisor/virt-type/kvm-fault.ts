import { NovaletError } from '../../config/novalet-error.js';
import type { KvmVerdict } from '../../messaging/contracts/kvm-verdict.js';
import { LibvirtError } from '../libvirt/error.js';
import { kvmUnavailableFault, KVM_MISSING_WORDS } from './decision.js';

/**
 * A build that needs KVM on a host where KVM is unusable. Its message is the
 * instance fault: libvirt's classic words first (what operators search for),
 * then the diagnosis and the remedy.
 */
export class KvmUnavailableError extends NovaletError {
  constructor(readonly fault: string) {
    super('KVM_UNAVAILABLE', fault);
  }
}

/**
 * libvirt's ways of saying "no KVM here": the classic words of older
 * libvirt and the field report, and libvirt 9's
 * "Emulator '/usr/bin/qemu-system-x86_64' does not support virt type 'kvm'"
 * (or, with no machine type given, "could not get preferred machine for
 * /usr/bin/qemu-system-x86_64 type=kvm"; or, asked for domain capabilities,
 * "the accel 'kvm' is not supported by '/usr/bin/qemu-system-x86_64' on
 * this host").
 */
const LIBVIRT_KVM_MISSING = [
  new RegExp(KVM_MISSING_WORDS.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')),
  /Emulator '[^']*' does not support virt type 'kvm'/,
  // libvirt 9 when no machine type is given: it cannot pick one for kvm.
  /could not get preferred machine for \S+ type=kvm/,
  /domain type 'kvm' is not supported/i,
  // libvirt 9's domain capabilities for virttype=kvm, asked for the guest CPU check.
  /the accel 'kvm' is not supported by/,
];

export function isLibvirtKvmMissing(message: string): boolean {
  return LIBVIRT_KVM_MISSING.some((pattern) => pattern.test(message));
}

/**
 * libvirt refused KVM although novalet's verdict allowed it (say /dev/kvm
 * vanished): the same fault, with libvirt's own words kept as the diagnosis.
 */
export function kvmFaultFromLibvirt(libvirtMessage: string, verdict: KvmVerdict): KvmUnavailableError {
  const known = verdict.reasons.length > 0 ? kvmUnavailableFault(verdict) : `${KVM_MISSING_WORDS}: KVM is not usable on this host.`;
  return new KvmUnavailableError(
    `${known} libvirt said: ${libvirtMessage}. Check /dev/kvm and the KVM module (novalet validate), or set [libvirt] virt_type = qemu.`,
  );
}

/**
 * An error met while launching an instance: when the instance was to run
 * under KVM and libvirt's words say KVM is missing, the KVM fault; any other
 * error as it is.
 */
export function asKvmFault(err: unknown, virtType: 'kvm' | 'qemu', verdict: KvmVerdict): unknown {
  if (virtType === 'kvm' && err instanceof LibvirtError && isLibvirtKvmMissing(err.message)) return kvmFaultFromLibvirt(err.libvirtMessage, verdict);
  return err;
}
