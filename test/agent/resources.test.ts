/**
 * nova's resource accounting on records: usage from flavors plus the
 * reserved amounts, ratios defaulting to nova's initial_* ones, and the
 * claim test (messaging/contracts/capacity.ts, Placement's arithmetic) with
 * nova's words.
 */
import { describe, expect, it } from 'vitest';
import type { InstanceRecord } from '../../agent/instance-record.js';
import { allocationRatios, claimRefusal, resourceView } from '../../agent/resources.js';
import { loadConfig } from '../../config/load-config.js';

const defaults = loadConfig({ configFiles: [] }).values.DEFAULT;

function record(uuid: string, state: InstanceRecord['state'], vcpus = 1, memoryMiB = 256, rootGb = 1, rescheduled = false): InstanceRecord {
  return {
    uuid,
    name: uuid,
    host: 'h',
    state,
    task: null,
    flavor: { vcpus, memoryMiB, rootGb },
    image: null,
    kernel: null,
    virtType: 'qemu',
    virtTypeReason: null,
    fault: null,
    createdAt: '',
    updatedAt: '',
    ...(rescheduled ? { origin: { messageId: 'm', body: {}, rescheduledAt: 'now' } } : {}),
  };
}

describe('resources', () => {
  it('unset or 0.0 ratios take the initial ones, as nova', () => {
    expect(allocationRatios(defaults)).toEqual({ cpu: 4, ram: 1, disk: 1 });
    expect(allocationRatios({ ...defaults, cpu_allocation_ratio: 0, ram_allocation_ratio: 1.5 })).toEqual({ cpu: 4, ram: 1.5, disk: 1 });
  });

  it('counts building, active, stopped and errored-after-running instances, not failed builds, deleted or handed-back ones; running_vms counts all not deleted', () => {
    // d: a build that failed before its guest existed (no virt type): nothing held. g: a guest that crashed: held until deleted, as nova.
    const failedBuild = { ...record('d', 'error', 8, 8192), virtType: null };
    const crashed = record('g', 'error', 1, 256, 1);
    const records = [record('a', 'active', 2, 512, 10), record('b', 'building'), record('c', 'stopped'), failedBuild, record('e', 'deleted', 8), record('f', 'active', 8, 8192, 1, true), crashed];
    const view = resourceView({ vcpus: 4, memoryMb: 4096, localGb: 100 }, records, { ...defaults, reserved_host_memory_mb: 512, reserved_host_disk_mb: 2048 });
    expect(view).toMatchObject({ vcpus_used: 5, memory_mb_used: 512 + 1280, free_ram_mb: 4096 - 1792, local_gb_used: 2 + 13, free_disk_gb: 85, running_vms: 5 });
  });

  it("refuses what does not fit with nova's words, and lets the allocation ratio overcommit vCPUs, never beyond the total for one instance", () => {
    const view = resourceView({ vcpus: 2, memoryMb: 1024, localGb: 10 }, [record('a', 'active', 2, 768, 1), record('b', 'active', 2, 0, 0), record('c', 'active', 2, 0, 0)], { ...defaults, reserved_host_memory_mb: 0 });
    expect(claimRefusal(view, { vcpus: 1, memoryMb: 256, rootGb: 1 })).toBeNull();
    const memory = claimRefusal(view, { vcpus: 1, memoryMb: 512, rootGb: 1 });
    expect(memory?.code).toBe('INSUFFICIENT_RESOURCES');
    expect(memory?.message).toBe('Insufficient compute resources: Free memory 256.00 MB < requested 512 MB.');
    // 2 CPUs at the default ratio 4: 8 vCPUs, 6 taken.
    expect(claimRefusal(view, { vcpus: 2, memoryMb: 16, rootGb: 0 })).toBeNull();
    expect(claimRefusal({ ...view, vcpus_used: 7 }, { vcpus: 2, memoryMb: 16, rootGb: 0 })?.message).toBe('Insufficient compute resources: Free vcpu 1.00 VCPU < requested 2 VCPU.');
    expect(claimRefusal(view, { vcpus: 3, memoryMb: 16, rootGb: 0 })?.message).toBe('Insufficient compute resources: Free vcpu 2.00 VCPU < requested 3 VCPU.');
    expect(claimRefusal({ ...view, vcpus_used: 0 }, { vcpus: 3, memoryMb: 16, rootGb: 0 })?.message).toBe('Insufficient compute resources: Total vcpu 2 VCPU < requested 3 VCPU (one instance never overcommits against itself).');
    expect(claimRefusal(view, { vcpus: 1, memoryMb: 16, rootGb: 10 })?.message).toMatch(/Free disk 9.00 GB < requested 10 GB/);
  });

  it("claims with Placement's arithmetic: reserved memory is not overcommitted (ratio 1.5, 512 MiB reserved: 2304 MiB for instances)", () => {
    const d = { ...defaults, reserved_host_memory_mb: 512, ram_allocation_ratio: 1.5, reserved_host_disk_mb: 1500 };
    const view = resourceView({ vcpus: 4, memoryMb: 2048, localGb: 20 }, [record('a', 'active', 1, 1536, 10)], d);
    expect(view).toMatchObject({ memory_mb_used: 2048, ram_allocation_ratio: 1.5, local_gb_used: 12 });
    expect(claimRefusal(view, { vcpus: 1, memoryMb: 768, rootGb: 8 })).toBeNull();
    // total × ratio − used would leave 1024 MiB; Placement leaves 768.
    expect(claimRefusal(view, { vcpus: 1, memoryMb: 769, rootGb: 1 })?.message).toBe('Insufficient compute resources: Free memory 768.00 MB < requested 769 MB.');
    // 20 GiB less 2 reserved (1500 MB rounded up), 10 taken: 8 left.
    expect(claimRefusal(view, { vcpus: 1, memoryMb: 16, rootGb: 9 })?.message).toBe('Insufficient compute resources: Free disk 8.00 GB < requested 9 GB.');
  });
});
