import type { NovaCpuInfo } from './cpu-info.js';
import type { EffectiveVirtType, KvmVerdict } from './kvm-verdict.js';
import type { VmState } from './instance-event.js';

/**
 * A compute host's capability report on `novalet.events`, routing key
 * `host.<host>.report`, with nova's ComputeNode field names: the shape
 * schedulers filter on. Full at start, on any change and at least every ten
 * heartbeats; heartbeats carry only what changes cheaply.
 */

/** nova's supported_instances entry: [arch, hv_type, vm_mode], e.g. ["x86_64", "qemu", "hvm"]. */
export type SupportedInstance = [arch: string, hvType: EffectiveVirtType, vmMode: 'hvm'];

export interface ServiceStatus {
  state: 'up' | 'disabled';
  /** nova's disabled_reason (`AUTO: …` when the host disabled itself); null when up. */
  disabled_reason: string | null;
}

/** What the hypervisor tells of itself: the part of a full report the compute driver gathers. */
export interface HypervisorCapabilities {
  hypervisor_type: 'QEMU';
  /** libvirt's version as an integer (major * 1,000,000 + minor * 1,000 + micro). */
  hypervisor_version: number;
  hypervisor_hostname: string;
  cpu_info: NovaCpuInfo;
  /** No `kvm` entry when KVM is unusable. */
  supported_instances: SupportedInstance[];
  kvm: KvmVerdict;
  effective_virt_type: EffectiveVirtType | null;
  /** Usable guest CPU models per virt type available here (no `kvm` key when KVM is unusable). */
  cpu_models: Partial<Record<EffectiveVirtType, string[]>>;
  /** nova's trait names for the guest CPU instances get here. */
  traits: string[];
}

interface ReportBase {
  host: string;
  /** Increasing per process. */
  seq: number;
  service: ServiceStatus;
}

export interface HeartbeatReport extends ReportBase {
  report: 'heartbeat';
  vcpus_used: number;
  memory_mb_used: number;
  running_vms: number;
}

export interface FullReport extends ReportBase, HypervisorCapabilities {
  report: 'full';
  vcpus: number;
  vcpus_used: number;
  memory_mb: number;
  memory_mb_used: number;
  free_ram_mb: number;
  local_gb: number;
  local_gb_used: number;
  free_disk_gb: number;
  cpu_allocation_ratio: number;
  ram_allocation_ratio: number;
  disk_allocation_ratio: number;
  reserved_host_memory_mb: number;
  reserved_host_disk_mb: number;
  running_vms: number;
  availability_zone: string | null;
  aggregates: { name: string; metadata: Record<string, string> }[];
  instances: { uuid: string; state: VmState }[];
  stats: Record<string, number>;
}

export type CapabilityReport = FullReport | HeartbeatReport;
