/**
 * The KVM verdict as it crosses the wire: in every capability report
 * (`kvm`), in `novalet validate --json` and `novalet capabilities --json`.
 * Each reason is a stable code, a sentence saying what is wrong, and a
 * remedy that ends with the TCG fallback.
 */

/** Every reason KVM can be unusable for; one meaning each (README.md, "The KVM decision"). */
export const KVM_REASON_CODES = [
  'NO_HW_VIRT_BARE_METAL',
  'NO_HW_VIRT_IN_VM',
  'KVM_DEVICE_MISSING',
  'KVM_DEVICE_NOT_ACCESSIBLE',
  'KVM_DEVICE_OPEN_FAILED',
  'KVM_DEVICE_NOT_CHAR',
  'KVM_API_VERSION',
  'KVM_CREATE_VM_FAILED',
  'KVM_MODULE_PVM',
  'KVM_NO_VENDOR_MODULE',
  'KVM_SELFTEST_FAILED',
] as const;

export type KvmReasonCode = (typeof KVM_REASON_CODES)[number];

export interface KvmReason {
  code: KvmReasonCode;
  /** What is wrong, as a sentence. */
  message: string;
  /** What to do about it, as a sentence (always ends with the TCG fallback). */
  remedy: string;
}

export interface KvmVerdict {
  /** True exactly when there is no reason. */
  usable: boolean;
  reasons: KvmReason[];
}

/** The virt types novalet runs instances with, both through QEMU. */
export type EffectiveVirtType = 'kvm' | 'qemu';
