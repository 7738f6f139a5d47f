/**
 * nova's resource accounting on records: usage from flavors plus the
 * reserved amounts, ratios defaulting to nova's initial_* ones, and the
 * claim test with nova's words.
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

  it('counts building, active and stopped instances, not error, deleted or handed-back ones; running_vms counts all not deleted', () => {
    const records = [record('a', 'active', 2, 512, 10), record('b', 'building'), record('c', 'stopped'), record('d', 'error', 8, 8192), record('e', 'deleted', 8), record('f', 'active', 8, 8192, 1, true)];
    const view = resourceView({ vcpus: 4, memoryMb: 4096, localGb: 100 }, records, { ...defaults, reserved_host_memory_mb: 512, reserved_host_disk_mb: 2048 });
    expect(view).toMatchObject({ vcpus_used: 4, memory_mb_used: 512 + 1024, free_ram_mb: 4096 - 1536, local_gb_used: 2 + 12, free_disk_gb: 86, running_vms: 4 });
  });

  it("refuses what does not fit with nova's words, and lets the allocation ratio overcommit vCPUs", () => {
    const view = resourceView({ vcpus: 2, memoryMb: 1024, localGb: 10 }, [record('a', 'active', 2, 768, 1)], { ...defaults, reserved_host_memory_mb: 0 });
    expect(claimRefusal(view, { vcpus: 1, memoryMb: 256, rootGb: 1 })).toBeNull();
    const memory = claimRefusal(view, { vcpus: 1, memoryMb: 512, rootGb: 1 });
    expect(memory?.code).toBe('INSUFFICIENT_RESOURCES');
    expect(memory?.message).toBe('Insufficient compute resources: Free memory 256.00 MB < requested 512 MB.');
    expect(claimRefusal(view, { vcpus: 7, memoryMb: 16, rootGb: 0 })?.message).toBe('Insufficient compute resources: Free vcpu 6.00 VCPU < requested 7 VCPU.');
    expect(claimRefusal(view, { vcpus: 1, memoryMb: 16, rootGb: 10 })?.message).toMatch(/Free disk 9.00 GB < requested 10 GB/);
  });
});
