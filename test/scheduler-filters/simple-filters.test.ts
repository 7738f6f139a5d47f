/**
 * nova's ComputeFilter, AvailabilityZoneFilter and the capacity filters
 * (RamFilter, CoreFilter, DiskFilter with Placement's arithmetic), each on
 * hosts made from docs/messages.md's example report (test/support/host-views.ts):
 * whether the host passes and, when not, the reason the operator reads.
 */
import { describe, expect, it } from 'vitest';
import { availabilityZoneFilter } from '../../scheduler-filters/filters/availability-zone-filter.js';
import { coreFilter, diskFilter, ramFilter } from '../../scheduler-filters/filters/capacity-filters.js';
import { computeFilter } from '../../scheduler-filters/filters/compute-filter.js';
import { hostView, requestSpec } from '../support/host-views.js';

describe('ComputeFilter', () => {
  it('passes a host whose service is up and enabled', () => {
    expect(computeFilter.hostPasses(hostView(), requestSpec())).toBeNull();
  });

  it('removes a disabled host, saying the reason the operator gave', () => {
    expect(computeFilter.hostPasses(hostView({ service: { state: 'disabled', disabled_reason: 'maintenance' } }), requestSpec())).toBe('its compute service is disabled (maintenance)');
    expect(computeFilter.hostPasses(hostView({ service: { state: 'disabled', disabled_reason: null } }), requestSpec())).toBe('its compute service is disabled');
  });

  it('removes a host not heard from within service_down_time, saying since when', () => {
    expect(computeFilter.hostPasses(hostView({}, { up: false, lastReportAt: '2026-12-08T00:00:00.000Z' }), requestSpec())).toBe(
      'its compute service is down: no report since 2026-12-08T00:00:00.000Z, longer than [DEFAULT] service_down_time',
    );
  });
});

describe('AvailabilityZoneFilter', () => {
  const filter = availabilityZoneFilter('nova');

  it('passes every host when no zone is asked for', () => {
    expect(filter.hostPasses(hostView({ availability_zone: 'az-2' }), requestSpec())).toBeNull();
  });

  it('passes hosts in the zone asked for, and removes the others naming both zones', () => {
    expect(filter.hostPasses(hostView({ availability_zone: 'az-1' }), requestSpec({ availabilityZone: 'az-1' }))).toBeNull();
    expect(filter.hostPasses(hostView({ availability_zone: 'az-2' }), requestSpec({ availabilityZone: 'az-1' }))).toBe("it is in availability zone 'az-2', not 'az-1'");
  });

  it('takes a host that names no zone to be in default_availability_zone', () => {
    expect(filter.hostPasses(hostView({ availability_zone: null }), requestSpec({ availabilityZone: 'nova' }))).toBeNull();
    expect(availabilityZoneFilter('az-9').hostPasses(hostView({ availability_zone: null }), requestSpec({ availabilityZone: 'nova' }))).toBe("it is in availability zone 'az-9', not 'nova'");
  });
});

describe('RamFilter, CoreFilter, DiskFilter (Placement\'s arithmetic)', () => {
  // The example host: 7940 MB with 512 reserved and 768 used (reserved included), 4 vCPUs at ratio 4 with 1 used, 38 GB with 1 used.
  it('pass what fits', () => {
    for (const filter of [ramFilter, coreFilter, diskFilter]) expect(filter.hostPasses(hostView(), requestSpec())).toBeNull();
  });

  it('RamFilter: (total − reserved) × ratio − used: 7172 MB free; one more MB is refused in nova\'s words', () => {
    expect(ramFilter.hostPasses(hostView(), requestSpec({}, { memory_mb: 7172 }))).toBeNull();
    expect(ramFilter.hostPasses(hostView(), requestSpec({}, { memory_mb: 7173 }))).toBe('Free memory 7172.00 MB < requested 7173 MB');
  });

  it('CoreFilter: vCPUs overcommit by cpu_allocation_ratio (4 × 4 − 1 = 15), never beyond the host itself', () => {
    expect(coreFilter.hostPasses(hostView({ vcpus_used: 11 }), requestSpec({}, { vcpus: 4 }))).toBeNull();
    expect(coreFilter.hostPasses(hostView({ vcpus_used: 13 }), requestSpec({}, { vcpus: 4 }))).toBe('Free vcpu 3.00 VCPU < requested 4 VCPU');
    expect(coreFilter.hostPasses(hostView(), requestSpec({}, { vcpus: 5 }))).toBe('Total vcpu 4 VCPU < requested 5 VCPU (one instance never overcommits against itself)');
  });

  it('DiskFilter: root_gb against local_gb; a flavor of root_gb 0 asks no disk', () => {
    expect(diskFilter.hostPasses(hostView(), requestSpec({}, { root_gb: 37 }))).toBeNull();
    expect(diskFilter.hostPasses(hostView(), requestSpec({}, { root_gb: 38 }))).toBe('Free disk 37.00 GB < requested 38 GB');
    expect(diskFilter.hostPasses(hostView({ local_gb_used: 38 }), requestSpec({}, { root_gb: 0 }))).toBeNull();
  });
});
