/**
 * The limits of an instance, in one place for both edges that check them:
 * the bus (messaging/contracts/compute-requests.ts, before anything is
 * acknowledged) and the launch (hypervisor/instance/spec.ts, which
 * re-exports them). They catch typos and nonsense, not policy: QEMU's own
 * maxima are libvirt's to check.
 */

export const MIN_MEMORY_MIB = 16;
export const MAX_MEMORY_MIB = 4 * 1024 * 1024;
export const MAX_VCPUS = 4096;
export const MAX_NAME_LENGTH = 255;
/** GiB; nova allows 0 (a kernel boot, or a disk the size of its image). */
export const MAX_ROOT_GB = 65536;

/** nova's image properties that decide how a guest runs, as both edges check them. */
export const ARCHITECTURE_NAME = /^[a-z0-9_]+$/;
export const MACHINE_TYPE_NAME = /^[a-zA-Z0-9._-]+$/;
export const IMAGE_HV_TYPES = ['kvm', 'qemu'] as const;
