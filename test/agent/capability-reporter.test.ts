/** When the host says what: full at start and on change, heartbeats between, a full one at least every ten. */
import { describe, expect, it } from 'vitest';
import { CapabilityReporter, HEARTBEATS_PER_FULL, type FullReportContent } from '../../agent/capability-reporter.js';
import { createLogger } from '../../config/logger.js';
import type { CapabilityReport } from '../../messaging/contracts/capability-report.js';
import { FAKE_CAPABILITIES } from '../support/fake-compute-driver.js';

const { cpu: _cpu, ...hypervisor } = FAKE_CAPABILITIES;

function content(overrides: Partial<FullReportContent> = {}): FullReportContent {
  return {
    host: 'h1',
    service: { state: 'up', disabled_reason: null },
    vcpus: 2, vcpus_used: 0, memory_mb: 4096, memory_mb_used: 512, free_ram_mb: 3584, local_gb: 50, local_gb_used: 0, free_disk_gb: 50,
    cpu_allocation_ratio: 4, ram_allocation_ratio: 1, disk_allocation_ratio: 1, reserved_host_memory_mb: 512, reserved_host_disk_mb: 0, running_vms: 0,
    ...hypervisor,
    availability_zone: 'nova', aggregates: [], instances: [], stats: {},
    ...overrides,
  };
}

function setUp() {
  let current = content();
  const sent: CapabilityReport[] = [];
  let failNext = false;
  const reporter = new CapabilityReporter(
    async () => current,
    async (report) => {
      if (failNext) {
        failNext = false;
        throw new Error('broker away');
      }
      sent.push(report);
    },
    createLogger({ name: 'test' }),
  );
  return { reporter, sent, set: (c: FullReportContent) => (current = c), failNext: () => (failNext = true) };
}

describe('CapabilityReporter', () => {
  it('a full report first, then heartbeats with only the cheap fields, a full one every ten heartbeats, seq increasing', async () => {
    const { reporter, sent } = setUp();
    await reporter.full();
    for (let i = 0; i < HEARTBEATS_PER_FULL + 2; i++) await reporter.tick();
    expect(sent[0]?.report).toBe('full');
    expect(sent.slice(1, HEARTBEATS_PER_FULL).every((r) => r.report === 'heartbeat')).toBe(true);
    expect(sent[HEARTBEATS_PER_FULL]?.report).toBe('full');
    expect(Object.keys(sent[1]!).sort()).toEqual(['host', 'memory_mb_used', 'report', 'running_vms', 'seq', 'service', 'vcpus_used']);
    expect(sent.map((r) => r.seq)).toEqual(sent.map((_, i) => i + 1));
  });

  it('a change beyond the cheap counters sends a full report at the next tick; counters alone do not', async () => {
    const { reporter, sent, set } = setUp();
    await reporter.full();
    set(content({ vcpus_used: 1, memory_mb_used: 768, running_vms: 1, free_ram_mb: 3328 }));
    await reporter.tick();
    expect(sent[1]?.report).toBe('heartbeat');
    set(content({ instances: [{ uuid: 'u', state: 'active' }] }));
    await reporter.tick();
    expect(sent[2]?.report).toBe('full');
    await reporter.changed();
    expect(sent).toHaveLength(3);
    set(content({ service: { state: 'disabled', disabled_reason: 'AUTO: x' } }));
    await reporter.changed();
    expect(sent[3]).toMatchObject({ report: 'full', service: { state: 'disabled' } });
  });

  it('a report the broker did not take is not counted as sent: the next one is full again', async () => {
    const { reporter, sent, failNext } = setUp();
    failNext();
    await reporter.full();
    expect(sent).toHaveLength(0);
    await reporter.tick();
    expect(sent[0]?.report).toBe('full');
  });

  it('a full report of a host with 20 instances stays within 8 KB; a heartbeat within 1 KB', async () => {
    const { reporter, sent, set } = setUp();
    set(content({ instances: Array.from({ length: 20 }, (_, i) => ({ uuid: `0b6c8f3e-2a4d-4c1e-9f00-${String(i).padStart(12, '0')}`, state: 'active' as const })) }));
    await reporter.full();
    await reporter.tick();
    expect(Buffer.byteLength(JSON.stringify(sent[0]))).toBeLessThanOrEqual(8 * 1024);
    expect(Buffer.byteLength(JSON.stringify(sent[1]))).toBeLessThanOrEqual(1024);
  });
});
