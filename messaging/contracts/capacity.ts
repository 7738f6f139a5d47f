import type { DefaultSection } from '../../config/novalet-config.js';
import type { FullReport } from './capability-report.js';

/**
 * nova's capacity arithmetic, the one definition for both sides of the
 * bus: the compute host's claims (agent/resources.ts) and the schedulers'
 * RamFilter, CoreFilter and DiskFilter. It is Placement's, with the
 * inventory nova's libvirt driver reports (nova/virt/libvirt/driver.py,
 * `_get_inventory` in update_provider_tree):
 *
 *   capacity = (total − reserved) × allocation_ratio
 *   a request fits when  used + requested ≤ capacity  and  requested ≤ max_unit
 *
 * (placement/objects/allocation.py, `_check_capacity_exceeded`), where
 * `used` is what the instances take — reserved excluded — and max_unit is
 * the total (an instance may overcommit against others, never against
 * itself, as nova's old CoreFilter and RamFilter also said; nova's claims
 * never had that test, so a request beyond both is worded as the claims
 * word it, "Free …"). An amount of 0
 * (a flavor with root_gb 0) asks nothing of that resource and always fits,
 * as nova requests no DISK_GB then. Reserved: memory
 * `reserved_host_memory_mb`, disk `reserved_host_disk_mb` rounded up to
 * whole GiB (nova's compute_utils.convert_mb_to_ceil_gb), vCPUs 0 (novalet
 * has no `reserved_host_cpus`).
 *
 * This differs from what novalet's claims computed before (and from nova's
 * claims before Placement): `total × ratio − (used + reserved)`. The two
 * agree when the ratio is 1; with a ratio r ≠ 1 Placement overcommits only
 * what is left after the reservation, so capacity is smaller by
 * reserved × (r − 1): 2048 MiB with 512 reserved at ratio 1.5 gives 2304
 * MiB for instances, not 2560.
 *
 * A capability report's `memory_mb_used` and `local_gb_used` include the
 * reserved amounts (nova's ComputeNode counts them so); the usage here is
 * those less the reservation.
 */

/** The resources a flavor asks for, in the words of nova's claims ("Free memory …"). */
export type CapacityResource = 'memory' | 'disk' | 'vcpu';

export const CAPACITY_RESOURCES: readonly CapacityResource[] = ['memory', 'disk', 'vcpu'];

/** Each resource's unit, as nova's claims print it. */
export const CAPACITY_UNITS: Readonly<Record<CapacityResource, 'MB' | 'GB' | 'VCPU'>> = { memory: 'MB', disk: 'GB', vcpu: 'VCPU' };

export interface AllocationRatios {
  cpu: number;
  ram: number;
  disk: number;
}

/** A configured ratio, or the initial one when unset or 0.0 (nova keeps 0.0 as "unset" for compatibility). */
export function effectiveRatio(configured: number | null, initial: number): number {
  return configured === null || configured === 0 ? initial : configured;
}

/** The ratios a host runs with and reports: `[DEFAULT] *_allocation_ratio`, else `initial_*_allocation_ratio`. */
export function allocationRatios(
  d: Pick<DefaultSection, 'cpu_allocation_ratio' | 'ram_allocation_ratio' | 'disk_allocation_ratio' | 'initial_cpu_allocation_ratio' | 'initial_ram_allocation_ratio' | 'initial_disk_allocation_ratio'>,
): AllocationRatios {
  return {
    cpu: effectiveRatio(d.cpu_allocation_ratio, d.initial_cpu_allocation_ratio),
    ram: effectiveRatio(d.ram_allocation_ratio, d.initial_ram_allocation_ratio),
    disk: effectiveRatio(d.disk_allocation_ratio, d.initial_disk_allocation_ratio),
  };
}

/** nova's compute_utils.convert_mb_to_ceil_gb: reserved disk in whole GiB, rounded up so that enough is kept. */
export function reservedDiskGb(reservedHostDiskMb: number): number {
  return reservedHostDiskMb > 0 ? Math.ceil(reservedHostDiskMb / 1024) : 0;
}

/** One resource as Placement keeps it (its inventory record's names). */
export interface Inventory {
  total: number;
  reserved: number;
  allocation_ratio: number;
  /** The most one instance may take: the total, as nova's libvirt driver reports it. */
  max_unit: number;
}

/** Placement's capacity of an inventory: (total − reserved) × allocation_ratio, never below 0. */
export function capacityOf(inventory: Inventory): number {
  return Math.max(0, (inventory.total - inventory.reserved) * inventory.allocation_ratio);
}

/** The fields of a capability report (nova's ComputeNode names) that capacity is computed from. */
export type CapacityFields = Pick<
  FullReport,
  | 'vcpus'
  | 'vcpus_used'
  | 'memory_mb'
  | 'memory_mb_used'
  | 'local_gb'
  | 'local_gb_used'
  | 'cpu_allocation_ratio'
  | 'ram_allocation_ratio'
  | 'disk_allocation_ratio'
  | 'reserved_host_memory_mb'
  | 'reserved_host_disk_mb'
>;

/** What a build asks for: a flavor's fields (WireFlavor has them). */
export interface CapacityRequest {
  vcpus: number;
  memory_mb: number;
  root_gb: number;
}

/** One resource of a host: its inventory and what its instances take (reserved excluded). */
export interface ResourceHolding {
  inventory: Inventory;
  used: number;
}

/** The inventory of one resource of a host and its usage, from a report's fields. */
export function resourceHolding(host: CapacityFields, resource: CapacityResource): ResourceHolding {
  switch (resource) {
    case 'memory': {
      const reserved = host.reserved_host_memory_mb;
      return { inventory: { total: host.memory_mb, reserved, allocation_ratio: host.ram_allocation_ratio, max_unit: host.memory_mb }, used: Math.max(0, host.memory_mb_used - reserved) };
    }
    case 'disk': {
      const reserved = reservedDiskGb(host.reserved_host_disk_mb);
      return { inventory: { total: host.local_gb, reserved, allocation_ratio: host.disk_allocation_ratio, max_unit: host.local_gb }, used: Math.max(0, host.local_gb_used - reserved) };
    }
    case 'vcpu':
      return { inventory: { total: host.vcpus, reserved: 0, allocation_ratio: host.cpu_allocation_ratio, max_unit: host.vcpus }, used: Math.max(0, host.vcpus_used) };
  }
}

/** One resource judged for one request. */
export interface ResourceFit {
  resource: CapacityResource;
  unit: 'MB' | 'GB' | 'VCPU';
  total: number;
  reserved: number;
  allocation_ratio: number;
  /** (total − reserved) × allocation_ratio. */
  capacity: number;
  /** What the host's instances take, reserved excluded. */
  used: number;
  /** capacity − used; below 0 when the host is over its capacity (a ratio lowered since). */
  free: number;
  requested: number;
  fits: boolean;
  /** Why not, in nova's words ("Free memory 128.00 MB < requested 256 MB"); null when it fits. */
  refusal: string | null;
}

/** Placement's test of one resource: requested ≤ max_unit and used + requested ≤ capacity; 0 asks nothing. */
export function fitResource(resource: CapacityResource, holding: ResourceHolding, requested: number): ResourceFit {
  const { inventory, used } = holding;
  const unit = CAPACITY_UNITS[resource];
  const capacity = capacityOf(inventory);
  const free = capacity - used;
  let refusal: string | null = null;
  if (requested > 0) {
    // Placement refuses either way; the claims' words come first, so a request that exceeds both reads as nova's claims read.
    if (used + requested > capacity) {
      // nova's claims._test wording; `free` as nova printed it, negative when over capacity.
      refusal = `Free ${resource} ${free.toFixed(2)} ${unit} < requested ${requested} ${unit}`;
    } else if (requested > inventory.max_unit) {
      refusal = `Total ${resource} ${inventory.max_unit} ${unit} < requested ${requested} ${unit} (one instance never overcommits against itself)`;
    }
  }
  return { resource, unit, total: inventory.total, reserved: inventory.reserved, allocation_ratio: inventory.allocation_ratio, capacity, used, free, requested, fits: refusal === null, refusal };
}

/** How much of `resource` the request asks. */
export function requestedAmount(request: CapacityRequest, resource: CapacityResource): number {
  return resource === 'memory' ? request.memory_mb : resource === 'disk' ? request.root_gb : request.vcpus;
}

/** One resource of a host judged for a request: what RamFilter (memory), DiskFilter (disk) and CoreFilter (vcpu) ask. */
export function resourceFit(host: CapacityFields, resource: CapacityResource, request: CapacityRequest): ResourceFit {
  return fitResource(resource, resourceHolding(host, resource), requestedAmount(request, resource));
}

export type CapacityCheck = Record<CapacityResource, ResourceFit>;

/** Every resource of a host judged for a request. */
export function checkCapacity(host: CapacityFields, request: CapacityRequest): CapacityCheck {
  return { memory: resourceFit(host, 'memory', request), disk: resourceFit(host, 'disk', request), vcpu: resourceFit(host, 'vcpu', request) };
}

/**
 * nova's ComputeResourcesUnavailable for what does not fit, every failing
 * resource in the claims' order (memory, disk, vcpu) joined by "; ":
 * "Insufficient compute resources: Free memory 128.00 MB < requested 256 MB."
 * Null when everything fits.
 */
export function insufficientResources(check: CapacityCheck): string | null {
  const reasons = CAPACITY_RESOURCES.map((r) => check[r].refusal).filter((r): r is string => r !== null);
  return reasons.length === 0 ? null : `Insufficient compute resources: ${reasons.join('; ')}.`;
}
