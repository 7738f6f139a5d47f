/**
 * nova's `cpu_info` (compute_nodes.cpu_info; `openstack hypervisor show -c
 * cpu_info`), as nova's libvirt driver builds it in _get_cpu_info: the host
 * CPU from libvirt's capabilities, features sorted. Capability reports carry
 * it; `novalet cpu-compare` and `cpu-baseline` read it back.
 */
export interface NovaCpuInfo {
  arch: string;
  model: string | null;
  vendor: string | null;
  /** cells: NUMA cells (1 when libvirt lists none); the rest per libvirt's host CPU topology. */
  topology: { cells: number; sockets: number | null; cores: number | null; threads: number | null };
  features: string[];
}
