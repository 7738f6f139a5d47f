import type { CapabilityReport, FullReport, HeartbeatReport, ServiceStatus, SupportedInstance } from './capability-report.js';
import type { NovaCpuInfo } from './cpu-info.js';
import { array, boolean, checking, child, mapEntries, matching, object, oneOf, refuse, Refusal, text, wholeNumber } from './field-checks.js';
import { HOST_NAME_PATTERN, MAX_HOST_NAME_LENGTH } from './host-name.js';
import type { VmState } from './instance-event.js';
import { ARCHITECTURE_NAME } from './instance-limits.js';
import { KVM_REASON_CODES, type EffectiveVirtType, type KvmReason, type KvmVerdict } from './kvm-verdict.js';
import { UUID_PATTERN, type Checked } from './wire.js';

/**
 * The check of a capability report's body (docs/messages.md, "Capability
 * reports"), as a scheduler takes it in before it trusts a host: a full
 * report or a heartbeat, every field of its type and within bounds, the
 * first that is not refused with BODY_INVALID and a reason naming it by its
 * JSON path. Fields the contract does not name (`unrecorded_domains`, a
 * newer host's additions) are ignored and not passed on, so only the
 * known, bounded shape comes out; its depth is that shape's, whatever the
 * message nested elsewhere (the envelope's decoding bounds that).
 */

/** The bounds of a report's strings, arrays and maps. */
export const REPORT_LIMITS = {
  nameLength: 255,
  reasonLength: 4096,
  cpuFeatures: 1024,
  supportedInstances: 64,
  kvmReasons: 64,
  cpuModels: 1024,
  traits: 1024,
  aggregates: 256,
  metadataKeys: 256,
  metadataValueLength: 255,
  instances: 65536,
  statsKeys: 256,
} as const;

const VIRT_TYPES = ['kvm', 'qemu'] as const satisfies readonly EffectiveVirtType[];
const VM_STATES = ['building', 'active', 'stopped', 'error', 'deleted'] as const satisfies readonly VmState[];
const TRAIT_NAME = /^[A-Z0-9_]{1,255}$/;

function name(value: unknown, path: string, what: string): string {
  return text(value, path, 1, REPORT_LIMITS.nameLength, `give ${what}, 1 to ${REPORT_LIMITS.nameLength} characters without control characters`);
}

function nullable<T>(value: unknown, check: (v: unknown) => T): T | null {
  return value === null ? null : check(value);
}

function hostName(value: unknown, path: string): string {
  return matching(value, path, HOST_NAME_PATTERN, MAX_HOST_NAME_LENGTH, `give a host name of 1 to ${MAX_HOST_NAME_LENGTH} letters, digits, '.', '_', ':' or '-'`);
}

function architecture(value: unknown, path: string): string {
  return matching(value, path, ARCHITECTURE_NAME, 64, 'give an architecture name of lowercase letters, digits and _, such as x86_64 or aarch64');
}

function service(value: unknown, path: string): ServiceStatus {
  const fields = object(value, path, 'give an object {"state": "up" | "disabled", "disabled_reason": string or null}');
  const allowed = `give a string of at most ${REPORT_LIMITS.reasonLength} characters, or null`;
  return {
    state: oneOf(fields.state, `${path}.state`, ['up', 'disabled'] as const),
    disabled_reason: nullable(fields.disabled_reason, (v) => text(v, `${path}.disabled_reason`, 0, REPORT_LIMITS.reasonLength, allowed, 'allowed')),
  };
}

function count(fields: Record<string, unknown>, key: string, path: string): number {
  return wholeNumber(fields[key], child(path, key), 0);
}

/** nova's free_ram_mb and free_disk_gb: total less used, below 0 when the reservation or an overcommit takes more. */
function signedCount(fields: Record<string, unknown>, key: string, path: string): number {
  return wholeNumber(fields[key], child(path, key), -Number.MAX_SAFE_INTEGER);
}

function ratio(fields: Record<string, unknown>, key: string, path: string): number {
  const value = fields[key];
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0 || value > 1e6) {
    refuse(child(path, key), value, "give the ratio the host runs with, a number above 0 (an unset ratio is reported as its initial_* one, never 0) and at most 1000000");
  }
  return value;
}

function strings(value: unknown, path: string, max: number, check: (item: unknown, at: string) => string, what: string): string[] {
  return array(value, path, max, `give an array of at most ${max} ${what}`).map((item, i) => check(item, `${path}[${i}]`));
}

function cpuInfo(value: unknown, path: string): NovaCpuInfo {
  const fields = object(value, path, 'give nova\'s cpu_info object {"arch", "model", "vendor", "topology", "features"}');
  const topologyPath = `${path}.topology`;
  const topology = object(fields.topology, topologyPath, 'give an object {"cells", "sockets", "cores", "threads"}');
  const optionalCount = (key: string) => nullable(topology[key], (v) => wholeNumber(v, child(topologyPath, key), 1));
  return {
    arch: architecture(fields.arch, `${path}.arch`),
    model: nullable(fields.model, (v) => name(v, `${path}.model`, 'the CPU model, or null')),
    vendor: nullable(fields.vendor, (v) => name(v, `${path}.vendor`, 'the CPU vendor, or null')),
    topology: { cells: wholeNumber(topology.cells, `${topologyPath}.cells`, 1), sockets: optionalCount('sockets'), cores: optionalCount('cores'), threads: optionalCount('threads') },
    features: strings(fields.features, `${path}.features`, REPORT_LIMITS.cpuFeatures, (v, at) => name(v, at, 'a CPU feature name'), 'feature names'),
  };
}

function supportedInstances(value: unknown, path: string): SupportedInstance[] {
  const allowed = `give an array of at most ${REPORT_LIMITS.supportedInstances} [arch, hv_type, vm_mode] triples, such as ["x86_64", "qemu", "hvm"]`;
  return array(value, path, REPORT_LIMITS.supportedInstances, allowed).map((entry, i) => {
    const at = `${path}[${i}]`;
    if (!Array.isArray(entry) || entry.length !== 3) refuse(at, entry, 'give an [arch, hv_type, vm_mode] triple, such as ["x86_64", "qemu", "hvm"]');
    return [architecture(entry[0], `${at}[0]`), oneOf(entry[1], `${at}[1]`, VIRT_TYPES), oneOf(entry[2], `${at}[2]`, ['hvm'] as const)];
  });
}

function kvmVerdict(value: unknown, path: string): KvmVerdict {
  const fields = object(value, path, 'give an object {"usable", "reasons": [{"code", "message", "remedy"}]}');
  const usable = boolean(fields.usable, `${path}.usable`);
  const reasonsPath = `${path}.reasons`;
  const reasons = array(fields.reasons, reasonsPath, REPORT_LIMITS.kvmReasons, `give an array of at most ${REPORT_LIMITS.kvmReasons} reasons`).map((reason, i): KvmReason => {
    const at = `${reasonsPath}[${i}]`;
    const r = object(reason, at, 'give an object {"code", "message", "remedy"}');
    const sentence = (key: string) => text(r[key], child(at, key), 1, REPORT_LIMITS.reasonLength, `give a sentence of 1 to ${REPORT_LIMITS.reasonLength} characters`, 'allowed');
    return { code: oneOf(r.code, `${at}.code`, KVM_REASON_CODES), message: sentence('message'), remedy: sentence('remedy') };
  });
  if (usable !== (reasons.length === 0)) {
    throw new Refusal(`${path}.usable is ${usable} with ${reasons.length} reason${reasons.length === 1 ? '' : 's'}: KVM is usable exactly when there is no reason.`);
  }
  return { usable, reasons };
}

function cpuModels(value: unknown, path: string): FullReport['cpu_models'] {
  const fields = object(value, path, 'give an object of virt type ("kvm", "qemu") to an array of CPU model names');
  const out: FullReport['cpu_models'] = {};
  for (const virtType of VIRT_TYPES) {
    if (fields[virtType] === undefined) continue;
    out[virtType] = strings(fields[virtType], `${path}.${virtType}`, REPORT_LIMITS.cpuModels, (v, at) => name(v, at, 'a CPU model name'), 'CPU model names');
  }
  return out;
}

function aggregates(value: unknown, path: string): FullReport['aggregates'] {
  const { metadataKeys, metadataValueLength, nameLength } = REPORT_LIMITS;
  return array(value, path, REPORT_LIMITS.aggregates, `give an array of at most ${REPORT_LIMITS.aggregates} aggregates {"name", "metadata"}`).map((item, i) => {
    const at = `${path}[${i}]`;
    const fields = object(item, at, 'give an object {"name", "metadata": {…}}');
    const metadataPath = `${at}.metadata`;
    const entries = mapEntries(fields.metadata, metadataPath, metadataKeys, nameLength, `give an object of at most ${metadataKeys} string values`);
    const metadata = entries.map(([key, v]) => [key, text(v, child(metadataPath, key), 0, metadataValueLength, `give a string of at most ${metadataValueLength} characters`)] as const);
    return { name: name(fields.name, `${at}.name`, "the aggregate's name"), metadata: Object.fromEntries(metadata) };
  });
}

function instances(value: unknown, path: string): FullReport['instances'] {
  return array(value, path, REPORT_LIMITS.instances, `give an array of at most ${REPORT_LIMITS.instances} instances {"uuid", "state"}`).map((item, i) => {
    const at = `${path}[${i}]`;
    const fields = object(item, at, 'give an object {"uuid", "state"}');
    const uuid = matching(fields.uuid, `${at}.uuid`, UUID_PATTERN, 36, 'give a UUID such as 0b6c2f1a-8d3e-4f5a-9b7c-1d2e3f4a5b6c');
    return { uuid: uuid.toLowerCase(), state: oneOf(fields.state, `${at}.state`, VM_STATES) };
  });
}

function stats(value: unknown, path: string): Record<string, number> {
  const allowed = `give an object of at most ${REPORT_LIMITS.statsKeys} numbers`;
  const entries = mapEntries(value, path, REPORT_LIMITS.statsKeys, REPORT_LIMITS.nameLength, allowed);
  for (const [key, v] of entries) {
    if (typeof v !== 'number' || !Number.isFinite(v)) refuse(child(path, key), v, 'give a number');
  }
  return Object.fromEntries(entries) as Record<string, number>;
}

function heartbeat(fields: Record<string, unknown>, path: string): HeartbeatReport {
  return {
    report: 'heartbeat',
    host: hostName(fields.host, `${path}.host`),
    seq: wholeNumber(fields.seq, `${path}.seq`, 1),
    service: service(fields.service, `${path}.service`),
    vcpus_used: count(fields, 'vcpus_used', path),
    memory_mb_used: count(fields, 'memory_mb_used', path),
    running_vms: count(fields, 'running_vms', path),
  };
}

function full(fields: Record<string, unknown>, path: string): FullReport {
  const at = (key: string) => `${path}.${key}`;
  const base = heartbeat(fields, path);
  return {
    report: 'full',
    host: base.host,
    seq: base.seq,
    service: base.service,
    vcpus: count(fields, 'vcpus', path),
    vcpus_used: base.vcpus_used,
    memory_mb: count(fields, 'memory_mb', path),
    memory_mb_used: base.memory_mb_used,
    free_ram_mb: signedCount(fields, 'free_ram_mb', path),
    local_gb: count(fields, 'local_gb', path),
    local_gb_used: count(fields, 'local_gb_used', path),
    free_disk_gb: signedCount(fields, 'free_disk_gb', path),
    cpu_allocation_ratio: ratio(fields, 'cpu_allocation_ratio', path),
    ram_allocation_ratio: ratio(fields, 'ram_allocation_ratio', path),
    disk_allocation_ratio: ratio(fields, 'disk_allocation_ratio', path),
    reserved_host_memory_mb: count(fields, 'reserved_host_memory_mb', path),
    reserved_host_disk_mb: count(fields, 'reserved_host_disk_mb', path),
    running_vms: base.running_vms,
    hypervisor_type: oneOf(fields.hypervisor_type, at('hypervisor_type'), ['QEMU'] as const),
    hypervisor_version: count(fields, 'hypervisor_version', path),
    hypervisor_hostname: name(fields.hypervisor_hostname, at('hypervisor_hostname'), "libvirt's host name"),
    cpu_info: cpuInfo(fields.cpu_info, at('cpu_info')),
    supported_instances: supportedInstances(fields.supported_instances, at('supported_instances')),
    kvm: kvmVerdict(fields.kvm, at('kvm')),
    effective_virt_type: oneOf(fields.effective_virt_type, at('effective_virt_type'), [...VIRT_TYPES, null]),
    cpu_models: cpuModels(fields.cpu_models, at('cpu_models')),
    traits: strings(fields.traits, at('traits'), REPORT_LIMITS.traits, (v, p) => matching(v, p, TRAIT_NAME, 255, "give a trait name of capital letters, digits and _, such as HW_CPU_X86_AVX2"), 'trait names'),
    availability_zone: nullable(fields.availability_zone, (v) => name(v, at('availability_zone'), 'the zone, or null')),
    aggregates: aggregates(fields.aggregates, at('aggregates')),
    instances: instances(fields.instances, at('instances')),
    stats: stats(fields.stats, at('stats')),
  };
}

/**
 * A report's body (envelope kind `report`, key `host.<host>.report`) as a
 * full report or a heartbeat, or BODY_INVALID with the first field that is
 * wrong; UUIDs in lower case; unknown fields dropped.
 */
export function validateCapabilityReport(body: unknown, path = 'body'): Checked<CapabilityReport> {
  return checking(() => {
    const fields = object(body, path, 'give a capability report: a JSON object with "report": "full" or "heartbeat"');
    const kind = oneOf(fields.report, `${path}.report`, ['full', 'heartbeat'] as const);
    return kind === 'full' ? full(fields, path) : heartbeat(fields, path);
  });
}
