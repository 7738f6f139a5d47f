/**
 * nova's capacity arithmetic as Placement does it, on worked examples:
 * (total − reserved) × ratio against used + requested, reserved taken out
 * of a report's *_used, reserved disk rounded up to whole GiB, no instance
 * larger than the total, nothing asked of a resource requested at 0, and
 * the refusal in nova's words.
 */
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../config/load-config.js';
import {
  allocationRatios,
  capacityOf,
  checkCapacity,
  insufficientResources,
  reservedDiskGb,
  resourceFit,
  resourceHolding,
  type CapacityFields,
} from '../../messaging/contracts/capacity.js';

const defaults = loadConfig({ configFiles: [] }).values.DEFAULT;

/** A report's capacity fields: an idle host of 4 vCPUs, 2048 MiB and 100 GiB, nothing reserved, ratios 1. */
function host(fields: Partial<CapacityFields> = {}): CapacityFields {
  return {
    vcpus: 4,
    vcpus_used: 0,
    memory_mb: 2048,
    memory_mb_used: 0,
    local_gb: 100,
    local_gb_used: 0,
    cpu_allocation_ratio: 1,
    ram_allocation_ratio: 1,
    disk_allocation_ratio: 1,
    reserved_host_memory_mb: 0,
    reserved_host_disk_mb: 0,
    ...fields,
  };
}

const request = (vcpus: number, memory_mb: number, root_gb: number) => ({ vcpus, memory_mb, root_gb });

describe('allocation ratios', () => {
  it('take [DEFAULT] *_allocation_ratio, and the initial_* ones when unset or 0.0, as nova', () => {
    expect(allocationRatios(defaults)).toEqual({ cpu: 4, ram: 1, disk: 1 });
    expect(allocationRatios({ ...defaults, cpu_allocation_ratio: 0, ram_allocation_ratio: 1.5, disk_allocation_ratio: null, initial_disk_allocation_ratio: 2 })).toEqual({ cpu: 4, ram: 1.5, disk: 2 });
    expect(allocationRatios({ ...defaults, cpu_allocation_ratio: 16 }).cpu).toBe(16);
  });
});

describe('capacity (Placement: (total − reserved) × allocation_ratio)', () => {
  it('reserved disk is reserved_host_disk_mb rounded up to whole GiB (convert_mb_to_ceil_gb)', () => {
    expect([0, 1, 1024, 1025, 1500, 2048].map(reservedDiskGb)).toEqual([0, 1, 1, 2, 2, 2]);
  });

  it('memory at ratio 1.5 with 512 MiB reserved: 2304 MiB for instances, where total × ratio − reserved would give 2560', () => {
    // 1536 MiB of instances; the report's memory_mb_used counts the reservation too (nova's ComputeNode).
    const h = host({ memory_mb: 2048, reserved_host_memory_mb: 512, ram_allocation_ratio: 1.5, memory_mb_used: 512 + 1536 });
    const fit = resourceFit(h, 'memory', request(1, 768, 0));
    expect(fit).toMatchObject({ total: 2048, reserved: 512, allocation_ratio: 1.5, capacity: 2304, used: 1536, free: 768, requested: 768, fits: true, refusal: null });
    const over = resourceFit(h, 'memory', request(1, 769, 0));
    expect(over.fits).toBe(false);
    expect(over.refusal).toBe('Free memory 768.00 MB < requested 769 MB');
    // The arithmetic before: 2048 × 1.5 − 2048 = 1024 MiB free, so 1000 MiB would have been taken.
    expect(resourceFit(h, 'memory', request(1, 1000, 0)).fits).toBe(false);
    // The two differ by reserved × (ratio − 1).
    expect(2048 * 1.5 - 512 - capacityOf({ total: 2048, reserved: 512, allocation_ratio: 1.5, max_unit: 2048 })).toBe(512 * 0.5);
  });

  it('with ratio 1 the reservation counts the same either way', () => {
    const h = host({ memory_mb: 4096, reserved_host_memory_mb: 512, memory_mb_used: 512 + 3000 });
    expect(resourceFit(h, 'memory', request(1, 584, 0))).toMatchObject({ capacity: 3584, used: 3000, free: 584, fits: true });
    expect(resourceFit(h, 'memory', request(1, 585, 0)).refusal).toBe('Free memory 584.00 MB < requested 585 MB');
  });

  it('vCPUs at ratio 16: 4 CPUs give 64 vCPUs for instances, none reserved', () => {
    const h = host({ vcpus: 4, cpu_allocation_ratio: 16, vcpus_used: 62 });
    expect(resourceFit(h, 'vcpu', request(2, 16, 0))).toMatchObject({ total: 4, reserved: 0, capacity: 64, used: 62, free: 2, fits: true });
    expect(resourceFit(h, 'vcpu', request(3, 16, 0)).refusal).toBe('Free vcpu 2.00 VCPU < requested 3 VCPU');
  });

  it('one instance never takes more than the total (max_unit), however high the ratio', () => {
    const h = host({ vcpus: 4, cpu_allocation_ratio: 16, memory_mb: 2048, ram_allocation_ratio: 1.5 });
    expect(resourceFit(h, 'vcpu', request(4, 16, 0)).fits).toBe(true);
    expect(resourceFit(h, 'vcpu', request(5, 16, 0)).refusal).toBe('Total vcpu 4 VCPU < requested 5 VCPU (one instance never overcommits against itself)');
    expect(resourceFit(h, 'memory', request(1, 2049, 0))).toMatchObject({ capacity: 3072, fits: false });
    // Beyond the capacity as well: the claims' words.
    expect(resourceFit({ ...h, vcpus_used: 62 }, 'vcpu', request(5, 16, 0)).refusal).toBe('Free vcpu 2.00 VCPU < requested 5 VCPU');
  });

  it('disk with 1500 MB reserved: 2 GiB kept back, the report\'s local_gb_used less those 2 is the instances\'', () => {
    const h = host({ local_gb: 100, reserved_host_disk_mb: 1500, local_gb_used: 2 + 90 });
    expect(resourceFit(h, 'disk', request(1, 16, 8))).toMatchObject({ total: 100, reserved: 2, capacity: 98, used: 90, free: 8, fits: true });
    expect(resourceFit(h, 'disk', request(1, 16, 9)).refusal).toBe('Free disk 8.00 GB < requested 9 GB');
  });

  it('disk at ratio 2 with reserved disk: (100 − 2) × 2 = 196 GiB', () => {
    const h = host({ local_gb: 100, reserved_host_disk_mb: 2048, disk_allocation_ratio: 2, local_gb_used: 2 + 190 });
    expect(resourceFit(h, 'disk', request(1, 16, 6))).toMatchObject({ capacity: 196, used: 190, free: 6, fits: true });
    expect(resourceFit(h, 'disk', request(1, 16, 7)).fits).toBe(false);
  });

  it('a resource requested at 0 (root_gb 0) fits even on a host over its capacity, as nova asks no DISK_GB then', () => {
    // Over capacity: a ratio lowered after the instances were placed.
    const h = host({ local_gb: 10, local_gb_used: 12 });
    expect(resourceFit(h, 'disk', request(1, 16, 0))).toMatchObject({ capacity: 10, used: 12, free: -2, fits: true });
    expect(resourceFit(h, 'disk', request(1, 16, 1)).refusal).toBe('Free disk -2.00 GB < requested 1 GB');
  });

  it('reserved beyond the total leaves nothing, never a negative capacity', () => {
    const h = host({ memory_mb: 1024, reserved_host_memory_mb: 2048, memory_mb_used: 2048 });
    expect(resourceFit(h, 'memory', request(1, 16, 0))).toMatchObject({ capacity: 0, used: 0, fits: false });
  });

  it('the holding of a resource is its Placement inventory and its usage', () => {
    expect(resourceHolding(host({ memory_mb: 2048, reserved_host_memory_mb: 512, memory_mb_used: 768, ram_allocation_ratio: 1.5 }), 'memory')).toEqual({
      inventory: { total: 2048, reserved: 512, allocation_ratio: 1.5, max_unit: 2048 },
      used: 256,
    });
  });
});

describe('the refusal (nova\'s ComputeResourcesUnavailable)', () => {
  it('is null when everything fits', () => {
    const check = checkCapacity(host(), request(4, 2048, 100));
    expect(check.memory.fits && check.disk.fits && check.vcpu.fits).toBe(true);
    expect(insufficientResources(check)).toBeNull();
  });

  it('names every resource that does not fit, in the claims\' order, joined by "; "', () => {
    const h = host({ memory_mb: 1024, memory_mb_used: 896, local_gb: 10, local_gb_used: 9, vcpus: 2, vcpus_used: 2 });
    expect(insufficientResources(checkCapacity(h, request(1, 256, 1)))).toBe(
      'Insufficient compute resources: Free memory 128.00 MB < requested 256 MB; Free vcpu 0.00 VCPU < requested 1 VCPU.',
    );
    expect(insufficientResources(checkCapacity(h, request(1, 128, 2)))).toBe('Insufficient compute resources: Free disk 1.00 GB < requested 2 GB; Free vcpu 0.00 VCPU < requested 1 VCPU.');
  });
});
