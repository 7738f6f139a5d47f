/**
 * What the host probe finds out. Plain data: the probe fills it from a root
 * directory (`/` on a real host, a fixture tree in unit tests); the KVM
 * verdict (virt-type/decision.ts) and `novalet validate` read only this.
 * Facts only: what they mean for KVM is decided in virt-type/.
 */

export interface CpuInfo {
  /** `vendor_id`: GenuineIntel, AuthenticAMD, … ; null when cpuinfo has none. */
  vendor: string | null;
  modelName: string | null;
  family: number | null;
  model: number | null;
  stepping: number | null;
  /** Number of `processor` entries. */
  logicalCpus: number;
  /** The first processor's flags, in cpuinfo's order. */
  flags: string[];
}

export type KvmModuleName = 'kvm_intel' | 'kvm_amd' | 'kvm_pvm';

export interface KvmModuleFacts {
  /** The vendor module loaded (present under /sys/module), or null. */
  name: KvmModuleName | null;
  /** Whether the generic `kvm` module is there. */
  kvmCorePresent: boolean;
  /** Raw `parameters/nested` text (Y/N for Intel, 1/0 for AMD), null when absent. */
  nestedRaw: string | null;
  /** nestedRaw read as a boolean, null when absent or unreadable. */
  nested: boolean | null;
}

export interface KvmExtensions {
  /** KVM_CAP_NR_VCPUS: recommended maximum vCPUs per VM. */
  nrVcpus: number | null;
  /** KVM_CAP_MAX_VCPUS. */
  maxVcpus: number | null;
  /** KVM_CAP_MAX_VCPU_ID. */
  maxVcpuId: number | null;
  /** KVM_CAP_NR_MEMSLOTS. */
  nrMemslots: number | null;
}

export interface KvmDeviceFacts {
  path: string;
  exists: boolean;
  isCharDevice: boolean;
  /** Could this process open it read-write. */
  accessible: boolean;
  /** errno name of the failed open (EACCES, EPERM, ENOENT, …), null when it opened. */
  openError: string | null;
  /** KVM_GET_API_VERSION, null when not asked or it failed. */
  apiVersion: number | null;
  /** errno name when KVM_GET_API_VERSION failed (ENOTTY on a file that is not KVM's device), else null/absent. */
  apiVersionError?: string | null;
  /** KVM_CREATE_VM: null when not tried (device not open or API wrong). */
  createVm: { ok: boolean; error: string | null } | null;
  extensions: KvmExtensions;
}

export interface OuterHypervisorFacts {
  /** cpuinfo has the `hypervisor` flag: this host is itself a guest. */
  cpuFlag: boolean;
  /**
   * A name for what runs beneath: 'VMware', 'QEMU/KVM', 'Microsoft Hyper-V', 'Xen', 'VirtualBox',
   * 'Amazon EC2', 'Google Compute Engine', … or null when unknown/none (only the cpu flag says "guest").
   */
  name: string | null;
  /** DMI /sys/class/dmi/id/sys_vendor and product_name when present. */
  dmiVendor: string | null;
  dmiProduct: string | null;
  /** /proc/xen exists (or /sys/hypervisor/type says xen). */
  xen: boolean;
  /** Container evidence ('docker', 'podman', 'lxc', …) or null. */
  container: string | null;
}

export interface HostProbe {
  root: string;
  /** Machine architecture as uname says it (x86_64, aarch64, …). */
  arch: string;
  cpu: CpuInfo;
  kvmDevice: KvmDeviceFacts;
  kvmModule: KvmModuleFacts;
  hypervisor: OuterHypervisorFacts;
}
