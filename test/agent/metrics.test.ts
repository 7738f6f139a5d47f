/**
 * agent/metrics.ts on prom-client: the text it renders is read back by a
 * strict parser of the exposition format 0.0.4
 * (test/support/prometheus-exposition.ts) and says what happened — builds
 * received, refused and failed (failures never above builds), deletes,
 * failed actions, crashes, the outbox, unreadable records, degradation.
 */
import { describe, expect, it } from 'vitest';
import { BUILD_DURATION_BUCKETS, ServiceMetrics } from '../../agent/metrics.js';
import { serviceRegistry } from '../../service/metrics.js';
import { parseExposition, value, type Family } from '../support/prometheus-exposition.js';

const NAMES = [
  'novalet_builds_total',
  'novalet_build_successes_total',
  'novalet_build_failures_total',
  'novalet_build_duration_seconds',
  'novalet_deletes_total',
  'novalet_actions_failed_total',
  'novalet_guest_crashes_total',
  'novalet_kvm_usable',
  'novalet_effective_virt_type',
  'novalet_instances',
  'novalet_broker_connected',
  'novalet_broker_reconnects_total',
  'novalet_dead_letters_total',
  'novalet_outbox_pending',
  'novalet_outbox_oldest_seconds',
  'novalet_outbox_published_total',
  'novalet_unreadable_records',
  'novalet_degraded',
];

/** Without the process metrics: these tests read the service's own. */
const metricsAlone = (): ServiceMetrics => new ServiceMetrics(serviceRegistry({ processMetrics: false }));
const read = async (metrics: ServiceMetrics): Promise<Map<string, Family>> => parseExposition(await metrics.render());
const total = (families: Map<string, Family>, name: string): number => families.get(name)!.samples.reduce((sum, s) => sum + s.value, 0);

describe('ServiceMetrics', () => {
  it('renders every family with HELP and TYPE before anything happened, in the format, after the process metrics', async () => {
    const families = parseExposition(await new ServiceMetrics().render());
    expect([...families.keys()].filter((name) => name.startsWith('novalet_'))).toEqual(NAMES);
    // prom-client's process metrics come with the service's own.
    expect(families.has('process_resident_memory_bytes')).toBe(true);
    expect(families.get('novalet_build_duration_seconds')!.type).toBe('histogram');
    expect(families.get('novalet_kvm_usable')!.type).toBe('gauge');
    expect(families.get('novalet_dead_letters_total')!.type).toBe('counter');
    for (const counter of ['novalet_builds_total', 'novalet_deletes_total', 'novalet_guest_crashes_total', 'novalet_broker_reconnects_total', 'novalet_outbox_published_total']) {
      // Counters without labels start at 0, so that rate() sees their first increase.
      expect(value(families, counter), counter).toBe(0);
    }
    // Labelled series appear when something happens, not before.
    expect(families.get('novalet_build_failures_total')!.samples).toEqual([]);
    expect(families.get('novalet_degraded')!.samples).toEqual([]);
  });

  it('counts every build received, a refused one included, so that failures never exceed builds (issue 16, point 12)', async () => {
    const metrics = metricsAlone();
    for (let i = 0; i < 4; i++) metrics.buildReceived();
    metrics.buildSucceeded(1.5, 'qemu');
    metrics.buildSucceeded(0.7, 'qemu');
    metrics.buildFailed(3, 'IMAGE_CHECKSUM_MISMATCH');
    // Refused before anything was touched: received, and failed with duration 0.
    metrics.buildFailed(0, 'INSUFFICIENT_RESOURCES');
    const families = await read(metrics);
    expect(value(families, 'novalet_builds_total')).toBe(4);
    expect(value(families, 'novalet_build_successes_total', { virt_type: 'qemu' })).toBe(2);
    expect(value(families, 'novalet_build_successes_total', { virt_type: 'kvm' })).toBeUndefined();
    expect(value(families, 'novalet_build_failures_total', { code: 'IMAGE_CHECKSUM_MISMATCH' })).toBe(1);
    expect(value(families, 'novalet_build_failures_total', { code: 'INSUFFICIENT_RESOURCES' })).toBe(1);
    expect(total(families, 'novalet_build_successes_total') + total(families, 'novalet_build_failures_total')).toBe(value(families, 'novalet_builds_total'));
    expect(families.get('novalet_builds_total')!.help).toContain('refused ones included');
  });

  it('puts build durations in cumulative buckets (upper bounds inclusive), with _sum and _count, by outcome', async () => {
    const metrics = metricsAlone();
    for (const seconds of [0.1, 0.25, 0.3, 3, 400]) metrics.buildSucceeded(seconds, 'kvm');
    metrics.buildFailed(45, 'INTERNAL');
    const families = await read(metrics);
    const bucket = (le: string, outcome = 'succeeded') => value(families, 'novalet_build_duration_seconds_bucket', { outcome, le });
    expect(BUILD_DURATION_BUCKETS).toEqual([0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300]);
    expect([bucket('0.25'), bucket('0.5'), bucket('1'), bucket('2'), bucket('5'), bucket('300'), bucket('+Inf')]).toEqual([2, 3, 3, 3, 4, 4, 5]);
    expect(value(families, 'novalet_build_duration_seconds_count', { outcome: 'succeeded' })).toBe(5);
    expect(value(families, 'novalet_build_duration_seconds_sum', { outcome: 'succeeded' })).toBeCloseTo(403.65, 9);
    expect([bucket('30', 'failed'), bucket('60', 'failed'), bucket('+Inf', 'failed')]).toEqual([0, 1, 1]);
  });

  it('counts a negative or non-finite duration as 0 rather than spoiling the sum', async () => {
    const metrics = metricsAlone();
    metrics.buildSucceeded(-2, 'kvm');
    metrics.buildSucceeded(Number.NaN, 'kvm');
    metrics.buildSucceeded(Infinity, 'kvm');
    const families = await read(metrics);
    expect(value(families, 'novalet_build_duration_seconds_sum', { outcome: 'succeeded' })).toBe(0);
    expect(value(families, 'novalet_build_duration_seconds_bucket', { outcome: 'succeeded', le: '0.25' })).toBe(3);
  });

  it('counts deletes, failed actions by action and code, and guest crashes', async () => {
    const metrics = metricsAlone();
    metrics.deleted();
    metrics.deleted();
    metrics.actionFailed('stop', 'DISK_FULL');
    metrics.actionFailed('stop', 'DISK_FULL');
    metrics.actionFailed('reboot', 'LIBVIRT_ERROR');
    metrics.guestCrashed();
    const families = await read(metrics);
    expect(value(families, 'novalet_deletes_total')).toBe(2);
    expect(value(families, 'novalet_actions_failed_total', { action: 'stop', code: 'DISK_FULL' })).toBe(2);
    expect(value(families, 'novalet_actions_failed_total', { action: 'reboot', code: 'LIBVIRT_ERROR' })).toBe(1);
    expect(value(families, 'novalet_guest_crashes_total')).toBe(1);
  });

  it('gauges the KVM verdict and the effective virt type, both virt types written', async () => {
    const metrics = metricsAlone();
    metrics.setKvmVerdict(true, 'kvm');
    let families = await read(metrics);
    expect(value(families, 'novalet_kvm_usable')).toBe(1);
    expect(value(families, 'novalet_effective_virt_type', { virt_type: 'kvm' })).toBe(1);
    expect(value(families, 'novalet_effective_virt_type', { virt_type: 'qemu' })).toBe(0);
    metrics.setKvmVerdict(false, 'qemu');
    families = await read(metrics);
    expect(value(families, 'novalet_kvm_usable')).toBe(0);
    expect(value(families, 'novalet_effective_virt_type', { virt_type: 'kvm' })).toBe(0);
    expect(value(families, 'novalet_effective_virt_type', { virt_type: 'qemu' })).toBe(1);
    metrics.setKvmVerdict(false, null);
    families = await read(metrics);
    expect(families.get('novalet_effective_virt_type')!.samples.map((s) => s.value)).toEqual([0, 0]);
  });

  it('gauges instances by state and virt type, each count replacing the last', async () => {
    const metrics = metricsAlone();
    metrics.setInstances([
      { state: 'active', virtType: 'qemu', count: 3 },
      { state: 'building', virtType: null, count: 1 },
    ]);
    let families = await read(metrics);
    expect(value(families, 'novalet_instances', { state: 'active', virt_type: 'qemu' })).toBe(3);
    expect(value(families, 'novalet_instances', { state: 'building', virt_type: 'none' })).toBe(1);
    metrics.setInstances([{ state: 'active', virtType: 'qemu', count: 4 }]);
    families = await read(metrics);
    expect(families.get('novalet_instances')!.samples).toEqual([{ name: 'novalet_instances', labels: { state: 'active', virt_type: 'qemu' }, value: 4 }]);
  });

  it('gauges the broker connection and counts reconnects and dead letters by code', async () => {
    const metrics = metricsAlone();
    metrics.setBrokerConnected(true);
    metrics.setBrokerConnected(false);
    metrics.reconnected();
    metrics.reconnected();
    metrics.setBrokerConnected(true);
    metrics.deadLettered('MESSAGE_INVALID');
    metrics.deadLettered('MESSAGE_INVALID');
    const families = await read(metrics);
    expect(value(families, 'novalet_broker_connected')).toBe(1);
    expect(value(families, 'novalet_broker_reconnects_total')).toBe(2);
    expect(value(families, 'novalet_dead_letters_total', { code: 'MESSAGE_INVALID' })).toBe(2);
  });

  it('gauges the outbox (pending, the age of the oldest, 0 when empty) and counts what it published', async () => {
    const metrics = metricsAlone();
    metrics.setOutboxPending(3, 12.5);
    metrics.outboxPublished();
    let families = await read(metrics);
    expect([value(families, 'novalet_outbox_pending'), value(families, 'novalet_outbox_oldest_seconds'), value(families, 'novalet_outbox_published_total')]).toEqual([3, 12.5, 1]);
    // Nothing waits: no age, whatever the caller passed.
    metrics.setOutboxPending(0, 40);
    families = await read(metrics);
    expect([value(families, 'novalet_outbox_pending'), value(families, 'novalet_outbox_oldest_seconds')]).toEqual([0, 0]);
    metrics.setOutboxPending(-1, Number.NaN);
    families = await read(metrics);
    expect([value(families, 'novalet_outbox_pending'), value(families, 'novalet_outbox_oldest_seconds')]).toEqual([0, 0]);
  });

  it('gauges unreadable records, and each degradation reason, 1 while it holds and 0 after', async () => {
    const metrics = metricsAlone();
    metrics.setUnreadableRecords(2);
    metrics.setDegraded(['DISK_FULL', 'UNREADABLE_RECORDS']);
    let families = await read(metrics);
    expect(value(families, 'novalet_unreadable_records')).toBe(2);
    expect(value(families, 'novalet_degraded', { reason: 'DISK_FULL' })).toBe(1);
    expect(value(families, 'novalet_degraded', { reason: 'UNREADABLE_RECORDS' })).toBe(1);
    metrics.setDegraded(['UNREADABLE_RECORDS']);
    families = await read(metrics);
    expect(value(families, 'novalet_degraded', { reason: 'DISK_FULL' })).toBe(0);
    expect(value(families, 'novalet_degraded', { reason: 'UNREADABLE_RECORDS' })).toBe(1);
    metrics.setDegraded([]);
    families = await read(metrics);
    expect(families.get('novalet_degraded')!.samples.map((s) => s.value)).toEqual([0, 0]);
  });

  it('escapes label values as the format requires, and they read back unchanged', async () => {
    const weird = 'a\\b"c\nd';
    const metrics = metricsAlone();
    metrics.deadLettered(weird);
    metrics.buildFailed(1, 'x"}\n# TYPE evil counter');
    metrics.setInstances([{ state: 'active\\', virtType: '"kvm"', count: 1 }]);
    const text = await metrics.render();
    expect(text).toContain('code="a\\\\b\\"c\\nd"');
    const families = parseExposition(text);
    expect(value(families, 'novalet_dead_letters_total', { code: weird })).toBe(1);
    expect(value(families, 'novalet_build_failures_total', { code: 'x"}\n# TYPE evil counter' })).toBe(1);
    expect(value(families, 'novalet_instances', { state: 'active\\', virt_type: '"kvm"' })).toBe(1);
    expect(families.has('evil')).toBe(false);
  });

  it('keeps two services apart: each has a registry of its own', async () => {
    const one = metricsAlone();
    const two = metricsAlone();
    one.buildReceived();
    expect(value(await read(one), 'novalet_builds_total')).toBe(1);
    expect(value(await read(two), 'novalet_builds_total')).toBe(0);
    expect(one.contentType).toBe('text/plain; version=0.0.4; charset=utf-8');
  });
});
