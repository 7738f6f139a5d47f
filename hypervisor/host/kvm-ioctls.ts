/**
 * The narrow waist between the /dev/kvm probe and the kernel: open, ioctl,
 * close. The real implementation (koffi-kvm-ioctls.ts) calls libc; a recorded
 * one (recorded-kvm-ioctls.ts) replays what another host's device answered,
 * so unit tests can probe fixture trees of hosts this machine is not.
 */

/** Request numbers from <linux/kvm.h> (_IO(KVMIO = 0xAE, n)). */
export const KVM_GET_API_VERSION = 0xae00;
export const KVM_CREATE_VM = 0xae01;
export const KVM_CHECK_EXTENSION = 0xae03;

/** The only API version the kernel has ever shipped as stable. */
export const KVM_STABLE_API_VERSION = 12;

/** Capabilities asked with KVM_CHECK_EXTENSION. */
export const KVM_CAP_NR_VCPUS = 9;
export const KVM_CAP_NR_MEMSLOTS = 10;
export const KVM_CAP_MAX_VCPUS = 66;
export const KVM_CAP_MAX_VCPU_ID = 128;

/** What a call answered: a non-negative value (an fd, a version, …) or an errno name. */
export type IoctlOutcome = { ok: true; value: number } | { ok: false; errno: string };

export interface KvmIoctls {
  /** Open read-write, close-on-exec; the value is the fd. */
  open(path: string): IoctlOutcome;
  /** ioctl(fd, request[, arg]); -1 comes back as the errno name. */
  ioctl(fd: number, request: number, arg?: number): IoctlOutcome;
  /** Close an fd from open() or from KVM_CREATE_VM. Never throws. */
  close(fd: number): void;
  /**
   * True for a recording of another host's device: the fixture's regular
   * file stands for that host's character device node.
   */
  readonly standsInForCharDevice?: boolean;
}
