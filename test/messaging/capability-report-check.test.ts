import { randomUUID } from 'node:crypto';
/**
 * The check of capability reports: what the compute service really sends
 * (its own report content, through the real CapabilityReporter, as JSON on
 * the wire) and the examples of docs/messages.md pass; each field's bad
 * value is refused with BODY_INVALID and a reason naming that field;
 * strings, arrays and maps are bounded; unknown fields are dropped.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CapabilityReporter } from '../../agent/capability-reporter.js';
import { ComputeService } from '../../agent/compute-service.js';
import { ServiceMetrics } from '../../agent/metrics.js';
import { loadConfig } from '../../config/load-config.js';
import { createLogger } from '../../config/logger.js';
import { Broker } from '../../messaging/broker.js';
import { brokerOptionsFrom } from '../../messaging/broker-options.js';
import type { CapabilityReport } from '../../messaging/contracts/capability-report.js';
import { REPORT_LIMITS, validateCapabilityReport } from '../../messaging/contracts/capability-report-check.js';
import { FAKE_CAPABILITIES, FakeComputeDriver } from '../support/fake-compute-driver.js';
import { documentedReports } from '../support/host-views.js';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const log = createLogger({ name: 'report-check-test' });

/** The reports a compute service on the fake driver sends: its own content (ComputeService.reportNow) through a CapabilityReporter, a full one then a heartbeat, as JSON crosses the wire. */
async function reportsOfAService(): Promise<CapabilityReport[]> {
  const dir = mkdtempSync(path.join(tmpdir(), 'nvl-report-'));
  dirs.push(dir);
  mkdirSync(path.join(dir, 'images'));
  writeFileSync(path.join(dir, 'images', 'vmlinuz'), 'kernel');
  const file = path.join(dir, 'novalet.conf');
  writeFileSync(file, ['[DEFAULT]', 'host = compute-7', `state_path = ${dir}`, 'ram_allocation_ratio = 1.5', 'reserved_host_disk_mb = 1500', '[compute]', `image_dir = ${path.join(dir, 'images')}`, 'availability_zone = az-1', 'aggregates = ssd/disk=ssd, ssd/tier=gold, gpu'].join('\n'));
  const config = loadConfig({ configFiles: [file] }).values;
  const { cpu: _cpu, ...capabilities } = FAKE_CAPABILITIES;
  // The broker is never started: reportNow reads the records and the driver only; builds go in process.
  const service = new ComputeService({
    config,
    driver: new FakeComputeDriver(),
    broker: new Broker(brokerOptionsFrom(config), log, { computeHost: 'compute-7' }),
    log,
    metrics: new ServiceMetrics(),
    capabilities,
    service: { state: 'up', disabled_reason: null },
    inventory: async () => ({ vcpus: 4, memoryMb: 8192, localGb: 100 }),
  });
  await service.load();
  const web = '0b6c2f1a-8d3e-4f5a-9b7c-1d2e3f4a5b6c';
  const build = (uuid: string, name: string, flavor: Record<string, unknown>) => ({ instance: { uuid, name, flavor: { name: 'm1', vcpus: 1, memory_mb: 512, root_gb: 1, extra_specs: {}, ...flavor }, image: { kernel: { name: 'vmlinuz' }, cmdline: 'console=ttyS0', properties: {} } } });
  await service.core.builds.take(build(web, 'web-1', { vcpus: 2 }) as never, randomUUID(), 0);
  await service.core.builds.ended(web);
  await service.core.builds.take(build('1c7d3e2b-9e4f-4a6b-8c8d-2e3f4a5b6c7d', 'too-big', { memory_mb: 65536, name: 'm1.huge' }) as never, randomUUID(), 0);
  const sent: CapabilityReport[] = [];
  const reporter = new CapabilityReporter(() => service.reportNow(), async (report) => void sent.push(JSON.parse(JSON.stringify(report)) as CapabilityReport), log);
  await reporter.full();
  await reporter.tick();
  return sent;
}

const [documentedFull, documentedHeartbeat] = documentedReports() as [Record<string, unknown>, Record<string, unknown>];

function reason(body: unknown): string {
  const checked = validateCapabilityReport(body);
  if (checked.ok) throw new Error(`accepted: ${JSON.stringify(body).slice(0, 200)}`);
  expect(checked.code).toBe('BODY_INVALID');
  return checked.reason;
}

/** `documentedFull` with one field set (a dotted path; `undefined` removes it). */
function withField(base: Record<string, unknown>, dotted: string, value: unknown): Record<string, unknown> {
  const copy = structuredClone(base);
  const keys = dotted.split('.');
  let at: Record<string, unknown> = copy;
  for (const key of keys.slice(0, -1)) at = at[key] as Record<string, unknown>;
  if (value === undefined) delete at[keys.at(-1)!];
  else at[keys.at(-1)!] = value;
  return copy;
}

describe('validateCapabilityReport', () => {
  it('passes the full report and the heartbeat a compute service sends, unchanged', async () => {
    const [full, heartbeat] = await reportsOfAService();
    expect(full).toMatchObject({ report: 'full', host: 'compute-7', ram_allocation_ratio: 1.5, reserved_host_disk_mb: 1500, availability_zone: 'az-1' });
    expect(full?.report === 'full' && full.instances).toHaveLength(2);
    expect(full?.report === 'full' && full.aggregates).toEqual([{ name: 'ssd', metadata: { disk: 'ssd', tier: 'gold' } }, { name: 'gpu', metadata: {} }]);
    expect(heartbeat?.report).toBe('heartbeat');
    for (const report of [full, heartbeat]) {
      const checked = validateCapabilityReport(report);
      expect(checked).toEqual({ ok: true, value: report });
    }
  });

  it("passes docs/messages.md's examples", () => {
    expect(documentedFull.report).toBe('full');
    expect(documentedHeartbeat.report).toBe('heartbeat');
    expect(validateCapabilityReport(documentedFull)).toEqual({ ok: true, value: documentedFull });
    expect(validateCapabilityReport(documentedHeartbeat)).toEqual({ ok: true, value: documentedHeartbeat });
  });

  it('drops unknown fields (and unrecorded_domains), lowercases UUIDs, takes free_* below 0 and a null zone, model and topology counts', () => {
    const body: Record<string, unknown> = { ...structuredClone(documentedFull), extra: { deep: [[[1]]] }, unrecorded_domains: [{ uuid: 'x' }], free_ram_mb: -512, availability_zone: null, instances: [{ uuid: '0B6C2F1A-8D3E-4F5A-9B7C-1D2E3F4A5B6C', state: 'active', more: 1 }] };
    (body.cpu_info as Record<string, unknown>).model = null;
    (body.cpu_info as { topology: Record<string, unknown> }).topology = { cells: 1, sockets: null, cores: null, threads: null };
    const checked = validateCapabilityReport(body);
    if (!checked.ok) throw new Error(checked.reason);
    expect(checked.value).not.toHaveProperty('extra');
    expect(checked.value).not.toHaveProperty('unrecorded_domains');
    expect(checked.value).toMatchObject({ free_ram_mb: -512, availability_zone: null, instances: [{ uuid: '0b6c2f1a-8d3e-4f5a-9b7c-1d2e3f4a5b6c', state: 'active' }] });
    expect((checked.value as { instances: object[] }).instances[0]).not.toHaveProperty('more');
    const heartbeat = validateCapabilityReport({ ...documentedHeartbeat, vcpus: 'ignored in a heartbeat' });
    expect(heartbeat.ok && heartbeat.value).toEqual(documentedHeartbeat);
  });

  it('refuses what is not a report', () => {
    expect(reason(null)).toBe('body is null: give a capability report: a JSON object with "report": "full" or "heartbeat".');
    expect(reason([])).toMatch(/^body is an array/);
    expect(reason({ ...documentedFull, report: 'partial' })).toBe(`body.report is the string 'partial': give "full", "heartbeat".`);
  });

  const long = 'x'.repeat(5000);
  const tooMany = (n: number, item: unknown) => Array.from({ length: n + 1 }, () => item);
  // [field path, bad value, what the reason must start with]
  const fullCases: [string, unknown, string][] = [
    ['host', 'compute 1', "body.host is the string 'compute 1'"],
    ['host', '', "body.host is the string ''"],
    ['host', 'h'.repeat(240), 'body.host is the string'],
    ['seq', 0, 'body.seq is 0'],
    ['seq', 1.5, 'body.seq is 1.5'],
    ['seq', '1', "body.seq is the string '1'"],
    ['service', 'up', "body.service is the string 'up'"],
    ['service.state', 'down', "body.service.state is the string 'down'"],
    ['service.disabled_reason', 7, 'body.service.disabled_reason is 7'],
    ['service.disabled_reason', long, 'body.service.disabled_reason is the string'],
    ['vcpus', -1, 'body.vcpus is -1'],
    ['vcpus_used', undefined, 'body.vcpus_used is missing'],
    ['memory_mb', 1e300, 'body.memory_mb is 1e+300'],
    ['memory_mb_used', null, 'body.memory_mb_used is null'],
    ['free_ram_mb', 1.25, 'body.free_ram_mb is 1.25'],
    ['local_gb', true, 'body.local_gb is true'],
    ['local_gb_used', -3, 'body.local_gb_used is -3'],
    ['free_disk_gb', 'a lot', "body.free_disk_gb is the string 'a lot'"],
    ['cpu_allocation_ratio', 0, 'body.cpu_allocation_ratio is 0'],
    ['ram_allocation_ratio', -1.5, 'body.ram_allocation_ratio is -1.5'],
    ['disk_allocation_ratio', null, 'body.disk_allocation_ratio is null'],
    ['reserved_host_memory_mb', -512, 'body.reserved_host_memory_mb is -512'],
    ['reserved_host_disk_mb', '0', "body.reserved_host_disk_mb is the string '0'"],
    ['running_vms', 0.5, 'body.running_vms is 0.5'],
    ['hypervisor_type', 'Xen', "body.hypervisor_type is the string 'Xen'"],
    ['hypervisor_version', -9, 'body.hypervisor_version is -9'],
    ['hypervisor_hostname', 'a\nb', "body.hypervisor_hostname is the string 'a\\nb'"],
    ['cpu_info', '{"arch": "x86_64"}', 'body.cpu_info is the string'],
    ['cpu_info.arch', 'X86-64', "body.cpu_info.arch is the string 'X86-64'"],
    ['cpu_info.model', 42, 'body.cpu_info.model is 42'],
    ['cpu_info.vendor', long, 'body.cpu_info.vendor is the string'],
    ['cpu_info.topology', null, 'body.cpu_info.topology is null'],
    ['cpu_info.topology.cells', 0, 'body.cpu_info.topology.cells is 0'],
    ['cpu_info.topology.cores', 'four', "body.cpu_info.topology.cores is the string 'four'"],
    ['cpu_info.features', 'aes avx', "body.cpu_info.features is the string 'aes avx'"],
    ['cpu_info.features', ['aes', 7], 'body.cpu_info.features[1] is 7'],
    ['cpu_info.features', tooMany(REPORT_LIMITS.cpuFeatures, 'aes'), `body.cpu_info.features has ${REPORT_LIMITS.cpuFeatures + 1} items`],
    ['supported_instances', [['x86_64', 'qemu']], 'body.supported_instances[0] is an array'],
    ['supported_instances', [['x86_64', 'xen', 'hvm']], "body.supported_instances[0][1] is the string 'xen'"],
    ['supported_instances', [['x86_64', 'qemu', 'exe']], "body.supported_instances[0][2] is the string 'exe'"],
    ['supported_instances', [['', 'qemu', 'hvm']], "body.supported_instances[0][0] is the string ''"],
    ['kvm', true, 'body.kvm is true'],
    ['kvm.usable', 'no', "body.kvm.usable is the string 'no'"],
    ['kvm.usable', true, 'body.kvm.usable is true with 1 reason: KVM is usable exactly when there is no reason.'],
    ['kvm.reasons', [{ code: 'KVM_IS_SAD', message: 'm', remedy: 'r' }], "body.kvm.reasons[0].code is the string 'KVM_IS_SAD'"],
    ['kvm.reasons', [{ code: 'KVM_DEVICE_MISSING', message: '', remedy: 'r' }], "body.kvm.reasons[0].message is the string ''"],
    ['kvm.reasons', [{ code: 'KVM_DEVICE_MISSING', message: 'm' }], 'body.kvm.reasons[0].remedy is missing'],
    ['effective_virt_type', 'lxc', "body.effective_virt_type is the string 'lxc'"],
    ['effective_virt_type', undefined, 'body.effective_virt_type is missing'],
    ['cpu_models', [], 'body.cpu_models is an array'],
    ['cpu_models', { qemu: 'qemu64' }, "body.cpu_models.qemu is the string 'qemu64'"],
    ['cpu_models', { kvm: [null] }, 'body.cpu_models.kvm[0] is null'],
    ['traits', ['hw_cpu_x86_avx'], "body.traits[0] is the string 'hw_cpu_x86_avx'"],
    ['traits', tooMany(REPORT_LIMITS.traits, 'HW_CPU_X86_AVX'), `body.traits has ${REPORT_LIMITS.traits + 1} items`],
    ['availability_zone', '', "body.availability_zone is the string ''"],
    ['aggregates', {}, 'body.aggregates is an object'],
    ['aggregates', [{ name: 'ssd' }], 'body.aggregates[0].metadata is missing'],
    ['aggregates', [{ name: 'ssd', metadata: { disk: 1 } }], 'body.aggregates[0].metadata.disk is 1'],
    ['aggregates', [{ name: 'ssd', metadata: { '': 'x' } }], "body.aggregates[0].metadata has the key ''"],
    ['aggregates', [{ name: 'ssd', metadata: Object.fromEntries(Array.from({ length: 257 }, (_, i) => [`k${i}`, 'v'])) }], 'body.aggregates[0].metadata has 257 keys'],
    ['aggregates', [{ name: 7, metadata: {} }], 'body.aggregates[0].name is 7'],
    ['instances', [{ uuid: 'not-a-uuid', state: 'active' }], "body.instances[0].uuid is the string 'not-a-uuid'"],
    ['instances', [{ uuid: '0b6c2f1a-8d3e-4f5a-9b7c-1d2e3f4a5b6c', state: 'ACTIVE' }], "body.instances[0].state is the string 'ACTIVE'"],
    ['instances', tooMany(REPORT_LIMITS.instances, 0), `body.instances has ${REPORT_LIMITS.instances + 1} items`],
    ['stats', { num_instances: '1' }, "body.stats.num_instances is the string '1'"],
    ['stats', { 'io workload': null }, "body.stats['io workload'] is null"],
    ['stats', [1, 2], 'body.stats is an array'],
  ];
  it.each(fullCases)('a full report whose %s is %j is refused, naming it', (field, value, start) => {
    const text = reason(withField(documentedFull, field, value));
    expect(text.startsWith(start), text).toBe(true);
    // Every reason says what is allowed, and never carries a long value whole.
    expect(text.length).toBeLessThan(400);
  });

  const heartbeatCases: [string, unknown, string][] = [
    ['host', 'a*b', "body.host is the string 'a*b'"],
    ['seq', -1, 'body.seq is -1'],
    ['service', undefined, 'body.service is missing'],
    ['vcpus_used', '1', "body.vcpus_used is the string '1'"],
    ['memory_mb_used', -1, 'body.memory_mb_used is -1'],
    ['running_vms', undefined, 'body.running_vms is missing'],
  ];
  it.each(heartbeatCases)('a heartbeat whose %s is %j is refused, naming it', (field, value, start) => {
    const text = reason(withField(documentedHeartbeat, field, value));
    expect(text.startsWith(start), text).toBe(true);
  });

  it('a heartbeat is not taken for a full report: a body with report "full" needs every full field', () => {
    expect(reason({ ...documentedHeartbeat, report: 'full' })).toBe('body.vcpus is missing: give a whole number of at least 0.');
  });
});
