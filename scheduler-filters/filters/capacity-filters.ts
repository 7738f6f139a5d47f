/**
 * Capacity under nova's old filter names — RamFilter (memory), CoreFilter
 * (vCPUs), DiskFilter (root disk) — with Placement's arithmetic, the one
 * definition the compute host's claims use too
 * (messaging/contracts/capacity.ts): a host passes when
 * used + requested ≤ (total − reserved) × allocation_ratio and the request
 * is no larger than the host itself. nova does this in Placement now; the
 * filters are kept by name so that `enabled_filters` reads as it did.
 */
import { resourceFit, type CapacityResource } from '../../messaging/contracts/capacity.js';
import type { HostFilter } from './host-filter.js';

function capacityFilter(name: string, resource: CapacityResource): HostFilter {
  return {
    name,
    hostPasses(host, spec) {
      return resourceFit(host.report, resource, spec.flavor).refusal;
    },
  };
}

export const ramFilter = capacityFilter('RamFilter', 'memory');
export const coreFilter = capacityFilter('CoreFilter', 'vcpu');
export const diskFilter = capacityFilter('DiskFilter', 'disk');
