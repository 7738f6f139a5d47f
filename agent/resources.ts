/**
 * What this host has and what its instances take, as nova's resource
 * tracker counts it (nova/compute/resource_tracker.py): totals from the
 * host, usage from the instances' flavors plus the reserved amounts. The
 * claim test is Placement's arithmetic from messaging/contracts/capacity.ts
 * — (total − reserved) × allocation ratio ≥ used + requested, and no more
 * than the total for one instance — the one definition the schedulers'
 * filters use too. Unset ratios take nova's `initial_*_allocation_ratio`.
 */
import { statfs } from 'node:fs/promises';
import { availableParallelism, totalmem } from 'node:os';
import type { DefaultSection } from '../config/novalet-config.js';
import type { FullReport } from '../messaging/contracts/capability-report.js';
import { allocationRatios, checkCapacity, insufficientResources, reservedDiskGb } from '../messaging/contracts/capacity.js';
import type { InstanceFault, InstanceRecord } from './instance-record.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

export interface HostInventory {
  vcpus: number;
  memoryMb: number;
  localGb: number;
}

/** The host's totals: CPUs, memory, and the size of instances_path's file system. */
export async function hostInventory(instancesPath: string): Promise<HostInventory> {
  const fs = await statfs(instancesPath);
  return { vcpus: availableParallelism(), memoryMb: Math.floor(totalmem() / MiB), localGb: Math.floor((fs.blocks * fs.bsize) / GiB) };
}

// Where they were before capacity.ts took them: callers keep importing them from here.
export { allocationRatios, type AllocationRatios } from '../messaging/contracts/capacity.js';

/** Records whose instance holds resources here: not deleted, not handed back to the schedulers, not a build that never ran. */
export function holdsResources(record: InstanceRecord): boolean {
  if (record.origin?.rescheduledAt) return false;
  if (record.state === 'building' || record.state === 'active' || record.state === 'stopped') return true;
  // nova frees an instance's resources only once it is deleted (vm_states.ALLOW_RESOURCE_REMOVAL): an ERROR instance
  // that ran here (a crash, a failed reboot) keeps them, so a start of it is not over-committed; a build that
  // never ran (refused, or failed before its guest existed) holds nothing.
  return record.state === 'error' && record.virtType !== null;
}

/** Records that are this host's instances (reports and lists): all but deleted and handed-back ones. */
export function isHostInstance(record: InstanceRecord): boolean {
  return record.state !== 'deleted' && !record.origin?.rescheduledAt;
}

/** The resource fields of a full capability report, as nova's ComputeNode names them. */
export type ResourceView = Pick<
  FullReport,
  | 'vcpus'
  | 'vcpus_used'
  | 'memory_mb'
  | 'memory_mb_used'
  | 'free_ram_mb'
  | 'local_gb'
  | 'local_gb_used'
  | 'free_disk_gb'
  | 'cpu_allocation_ratio'
  | 'ram_allocation_ratio'
  | 'disk_allocation_ratio'
  | 'reserved_host_memory_mb'
  | 'reserved_host_disk_mb'
  | 'running_vms'
>;

export function resourceView(inventory: HostInventory, records: readonly InstanceRecord[], d: DefaultSection): ResourceView {
  const holding = records.filter(holdsResources);
  const ratios = allocationRatios(d);
  const vcpusUsed = holding.reduce((n, r) => n + r.flavor.vcpus, 0);
  const memoryUsed = d.reserved_host_memory_mb + holding.reduce((n, r) => n + r.flavor.memoryMiB, 0);
  const diskUsed = reservedDiskGb(d.reserved_host_disk_mb) + holding.reduce((n, r) => n + (r.flavor.rootGb ?? 0), 0);
  return {
    vcpus: inventory.vcpus,
    vcpus_used: vcpusUsed,
    memory_mb: inventory.memoryMb,
    memory_mb_used: memoryUsed,
    free_ram_mb: inventory.memoryMb - memoryUsed,
    local_gb: inventory.localGb,
    local_gb_used: diskUsed,
    free_disk_gb: inventory.localGb - diskUsed,
    cpu_allocation_ratio: ratios.cpu,
    ram_allocation_ratio: ratios.ram,
    disk_allocation_ratio: ratios.disk,
    reserved_host_memory_mb: d.reserved_host_memory_mb,
    reserved_host_disk_mb: d.reserved_host_disk_mb,
    running_vms: records.filter(isHostInstance).length,
  };
}

export interface Claim {
  vcpus: number;
  memoryMb: number;
  rootGb: number;
}

/**
 * The claim test of capacity.ts on this host's view, worded as nova's
 * ComputeResourcesUnavailable ("Insufficient compute resources: Free memory
 * 128.00 MB < requested 256 MB."); null when the build fits.
 */
export function claimRefusal(view: ResourceView, claim: Claim): InstanceFault | null {
  const message = insufficientResources(checkCapacity(view, { vcpus: claim.vcpus, memory_mb: claim.memoryMb, root_gb: claim.rootGb }));
  if (message === null) return null;
  return {
    code: 'INSUFFICIENT_RESOURCES',
    message,
    remedy: 'Build it on a host with room (a placed build goes back to the schedulers), delete instances here, or raise the allocation ratios.',
    at: new Date().toISOString(),
  };
}
