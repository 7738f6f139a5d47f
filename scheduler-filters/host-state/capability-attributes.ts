/**
 * The attributes of nova's HostState that ComputeCapabilitiesFilter can
 * reach (`capabilities:<name>` or an unscoped key), from a host's full
 * report, each with its Python type so that str() reads as nova's would:
 * cpu_info stays the JSON text nova keeps (so `capabilities:cpu_info:vendor`
 * reads into it), allocation ratios are floats, free_disk_mb and
 * disk_mb_used are MB as nova computes them. Not here (novalet has no
 * equivalent): numa_topology, pci_stats, metrics, limits, instances,
 * num_io_ops, failed_builds. novalet's own additions: effective_virt_type
 * and traits.
 */
import type { FullReport } from '../../messaging/contracts/capability-report.js';
import { pyFloat, pyJsonDumps, type PyValue } from './python-str.js';

export function capabilityAttributes(report: FullReport): Record<string, PyValue> {
  return {
    host: report.host,
    nodename: report.hypervisor_hostname,
    hypervisor_type: report.hypervisor_type,
    hypervisor_version: report.hypervisor_version,
    hypervisor_hostname: report.hypervisor_hostname,
    cpu_info: pyJsonDumps(report.cpu_info as unknown as PyValue),
    supported_instances: report.supported_instances.map((s) => [...s]),
    total_usable_ram_mb: report.memory_mb,
    free_ram_mb: report.free_ram_mb,
    total_usable_disk_gb: report.local_gb,
    free_disk_mb: report.free_disk_gb * 1024,
    disk_mb_used: report.local_gb_used * 1024,
    vcpus_total: report.vcpus,
    vcpus_used: report.vcpus_used,
    num_instances: report.running_vms,
    cpu_allocation_ratio: pyFloat(report.cpu_allocation_ratio),
    ram_allocation_ratio: pyFloat(report.ram_allocation_ratio),
    disk_allocation_ratio: pyFloat(report.disk_allocation_ratio),
    stats: { ...report.stats },
    effective_virt_type: report.effective_virt_type,
    traits: [...report.traits],
  };
}
