/**
 * What this host has and what its instances take, as nova's resource
 * tracker counts it (nova/compute/resource_tracker.py): totals from the
 * host, usage from the instances' flavors plus the reserved amounts, and
 * nova's claim test — a build fits when, for vCPUs, memory and disk,
 * total × allocation ratio − used ≥ requested. Unset ratios take nova's
 * `initial_*_allocation_ratio`.
 */
import { statfs } from 'node:fs/promises';
import { availableParallelism, totalmem } from 'node:os';
import type { DefaultSection } from '../config/novalet-config.js';
import type { FullReport } from '../messaging/contracts/capability-report.js';
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

export interface AllocationRatios {
  cpu: number;
  ram: number;
  disk: number;
}

/** nova: an unset (or 0.0) ratio means the initial one. */
export function allocationRatios(d: DefaultSection): AllocationRatios {
  const pick = (value: number | null, initial: number) => (value === null || value === 0 ? initial : value);
  return {
    cpu: pick(d.cpu_allocation_ratio, d.initial_cpu_allocation_ratio),
    ram: pick(d.ram_allocation_ratio, d.initial_ram_allocation_ratio),
    disk: pick(d.disk_allocation_ratio, d.initial_disk_allocation_ratio),
  };
}

/** Records whose instance holds resources here: not deleted, not failed, not handed back to the schedulers. */
export function holdsResources(record: InstanceRecord): boolean {
  if (record.origin?.rescheduledAt) return false;
  return record.state === 'building' || record.state === 'active' || record.state === 'stopped';
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
  const diskUsed = Math.ceil(d.reserved_host_disk_mb / 1024) + holding.reduce((n, r) => n + (r.flavor.rootGb ?? 0), 0);
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
 * nova's claim test, worded as nova's ComputeResourcesUnavailable
 * ("Insufficient compute resources: Free memory 128.00 MB < requested 256 MB.");
 * null when the build fits.
 */
export function claimRefusal(view: ResourceView, claim: Claim): InstanceFault | null {
  const checks: [string, number, number, string][] = [
    ['memory', view.memory_mb * view.ram_allocation_ratio - view.memory_mb_used, claim.memoryMb, 'MB'],
    ['disk', view.local_gb * view.disk_allocation_ratio - view.local_gb_used, claim.rootGb, 'GB'],
    ['vcpu', view.vcpus * view.cpu_allocation_ratio - view.vcpus_used, claim.vcpus, 'VCPU'],
  ];
  for (const [what, free, requested, unit] of checks) {
    if (free < requested) {
      return {
        code: 'INSUFFICIENT_RESOURCES',
        message: `Insufficient compute resources: Free ${what} ${Math.max(0, free).toFixed(2)} ${unit} < requested ${requested} ${unit}.`,
        remedy: 'Build it on a host with room (a placed build goes back to the schedulers), delete instances here, or raise the allocation ratios.',
        at: new Date().toISOString(),
      };
    }
  }
  return null;
}
