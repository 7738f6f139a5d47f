import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { FullReport, HeartbeatReport } from '../../messaging/contracts/capability-report.js';
import { COMPUTE_KINDS, validateBuildBody, validateComputeRequest, validateWireInstance, type BuildBody } from '../../messaging/contracts/compute-requests.js';
import { DEAD_LETTER_CODES, DEAD_LETTER_MEANINGS, deadLetterHeaders } from '../../messaging/contracts/dead-letter.js';
import { validateCapabilityReport } from '../../messaging/contracts/capability-report-check.js';
import { FAILED_ACTIONS, INSTANCE_EVENTS, type InstanceEvent, type InstanceEventName, type VmState } from '../../messaging/contracts/instance-event.js';
import { validateReplyBody } from '../../messaging/contracts/reply.js';
import { decodeEnvelope, type Checked, type Envelope } from '../../messaging/envelope.js';

/**
 * docs/messages.md against the code: every JSON example is JSON; every
 * envelope passes decoding and its kind's check (requests, reschedules,
 * boots, replies, events, reports — the last two key by key against their
 * types); every example followed by a block of x-novalet-* headers is
 * refused with exactly those headers; the table of dead-letter codes is the
 * catalogue's; the Python examples are Python.
 */

const top = path.resolve(import.meta.dirname, '../..');
const doc = readFileSync(path.join(top, 'docs/messages.md'), 'utf8');
const LIMITS = { maxBytes: 1024 * 1024 };

interface Block {
  lang: string;
  text: string;
  line: number;
}

const blocks: Block[] = [];
{
  const lines = doc.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(\w*)\s*$/.exec(lines[i]!);
    if (!open) continue;
    const start = i;
    const body: string[] = [];
    for (i++; i < lines.length && lines[i] !== '```'; i++) body.push(lines[i]!);
    blocks.push({ lang: open[1]!, text: body.join('\n'), line: start + 1 });
  }
}

const jsonBlocks = blocks.filter((b) => b.lang === 'json');
const isHeaders = (block: Block | undefined) => block?.lang === 'text' && block.text.startsWith('x-novalet-error:');
const refusedExamples = jsonBlocks.filter((b) => isHeaders(blocks[blocks.indexOf(b) + 1]));
const envelopes = jsonBlocks.filter((b) => !refusedExamples.includes(b) && 'version' in (JSON.parse(b.text) as object));

function decoded(block: Block): Envelope<string, Record<string, unknown>> {
  const checked = decodeEnvelope(Buffer.from(block.text, 'utf8'), LIMITS);
  if (!checked.ok) throw new Error(`docs/messages.md:${block.line}: ${checked.code}: ${checked.reason}`);
  return checked.value as Envelope<string, Record<string, unknown>>;
}

function passes<T>(block: Block, checked: Checked<T>): T {
  if (!checked.ok) throw new Error(`docs/messages.md:${block.line}: ${checked.code}: ${checked.reason}`);
  return checked.value;
}

/** Each event's fields beyond the four every event has (instance-event.ts), exhaustive by type. */
const EVENT_EXTRAS: { [E in InstanceEventName]: Exclude<keyof Extract<InstanceEvent, { event: E }>, 'event' | 'uuid' | 'host' | 'state'>[] } = {
  scheduled: ['alternates'],
  'create.start': [],
  'create.end': ['virt_type', 'virt_type_reason'],
  'create.error': ['fault', 'will_retry'],
  'delete.end': [],
  'power.on': [],
  'power.off': [],
  'reboot.end': ['type', 'requested_type'],
  'action.error': ['action', 'fault'],
};
/** Fields an event has only sometimes: power.off's fault, when the guest crashed. */
const OPTIONAL_EXTRAS: Partial<Record<InstanceEventName, string[]>> = { 'power.off': ['fault'] };
const VM_STATES: { [S in VmState]: true } = { building: true, active: true, stopped: true, error: true, deleted: true };

/** The values of an event example as instance-event.ts types them: a fault's three texts, action.error's action, reboot.end's types, a crash's power.off. */
function checkEventValues(where: string, body: Record<string, unknown>): void {
  if ('fault' in body) {
    const fault = body.fault as Record<string, unknown>;
    expect(Object.keys(fault).sort(), where).toEqual(['code', 'message', 'remedy']);
    for (const text of Object.values(fault)) expect(typeof text, where).toBe('string');
  }
  if (body.event === 'action.error') expect(FAILED_ACTIONS, where).toContain(body.action);
  if (body.event === 'reboot.end') {
    expect(['SOFT', 'HARD'], where).toContain(body.type);
    expect(['SOFT', 'HARD'], where).toContain(body.requested_type);
  }
  // power.off carries a fault exactly when the guest did not stop cleanly (then the instance is error).
  if (body.event === 'power.off') expect('fault' in body, where).toBe(body.state === 'error');
}

/** Every field of each report type, exhaustive by type (capability-report.ts). */
const FULL_FIELDS: { [K in keyof FullReport]-?: true } = {
  report: true, host: true, seq: true, service: true,
  vcpus: true, vcpus_used: true, memory_mb: true, memory_mb_used: true, free_ram_mb: true,
  local_gb: true, local_gb_used: true, free_disk_gb: true,
  cpu_allocation_ratio: true, ram_allocation_ratio: true, disk_allocation_ratio: true,
  reserved_host_memory_mb: true, reserved_host_disk_mb: true, running_vms: true,
  hypervisor_type: true, hypervisor_version: true, hypervisor_hostname: true,
  cpu_info: true, supported_instances: true, kvm: true, effective_virt_type: true, cpu_models: true, traits: true,
  availability_zone: true, aggregates: true, instances: true, stats: true,
};
const HEARTBEAT_FIELDS: { [K in keyof HeartbeatReport]-?: true } = { report: true, host: true, seq: true, service: true, vcpus_used: true, memory_mb_used: true, running_vms: true };

describe('docs/messages.md', () => {
  it('has JSON examples, each of them JSON', () => {
    expect(jsonBlocks.length).toBeGreaterThan(20);
    for (const block of jsonBlocks) expect(() => JSON.parse(block.text), `docs/messages.md:${block.line}`).not.toThrow();
  });

  it('every envelope example passes decoding and the check of its kind', () => {
    const seen = new Set<string>();
    for (const block of envelopes) {
      const envelope = decoded(block);
      const { kind, body } = envelope;
      seen.add(kind);
      const where = `docs/messages.md:${block.line}`;
      if ((COMPUTE_KINDS as readonly string[]).includes(kind)) {
        passes(block, validateComputeRequest(envelope));
      } else if (kind === 'reschedule') {
        const build = passes(block, validateBuildBody(body));
        expect(build.request?.faults.length, where).toBeGreaterThan(0);
      } else if (kind === 'boot') {
        passes(block, validateWireInstance(body.instance));
        expect(['undefined', 'string'], where).toContain(typeof body.availability_zone);
      } else if (kind === 'reply') {
        passes(block, validateReplyBody(body));
      } else if (kind === 'event') {
        const name = body.event as InstanceEventName;
        expect(INSTANCE_EVENTS, where).toContain(name);
        const optional = OPTIONAL_EXTRAS[name] ?? [];
        expect(Object.keys(body).filter((key) => !optional.includes(key)).sort(), where).toEqual(['event', 'uuid', 'host', 'state', ...EVENT_EXTRAS[name]].sort());
        expect(Object.keys(VM_STATES), where).toContain(body.state);
        checkEventValues(where, body);
      } else if (kind === 'report') {
        const fields = body.report === 'full' ? FULL_FIELDS : HEARTBEAT_FIELDS;
        expect(Object.keys(body).sort(), where).toEqual(Object.keys(fields).sort());
        passes(block, validateCapabilityReport(body));
      } else {
        throw new Error(`${where}: an example of kind ${kind}, which nothing checks`);
      }
    }
    expect([...seen].sort()).toEqual([...COMPUTE_KINDS, 'reschedule', 'boot', 'reply', 'event', 'report'].sort());
  });

  it('shows a build of each image form, placed and direct', () => {
    const builds = envelopes.map(decoded).filter((e) => e.kind === 'build').map((e) => e.body as unknown as BuildBody);
    const images = builds.map((b) => b.instance.image);
    expect(images.some((i) => i.url !== undefined && i.checksum !== undefined)).toBe(true);
    expect(images.some((i) => i.name !== undefined)).toBe(true);
    expect(images.some((i) => i.kernel !== undefined && i.ramdisk !== undefined && i.cmdline !== undefined)).toBe(true);
    expect(builds.some((b) => b.request === undefined)).toBe(true);
    expect(builds.some((b) => b.request !== undefined)).toBe(true);
  });

  it('each refused example is refused with exactly the headers shown after it', () => {
    expect(refusedExamples.length).toBeGreaterThanOrEqual(5);
    for (const block of refusedExamples) {
      const shown = blocks[blocks.indexOf(block) + 1]!.text.split('\n');
      const envelope = decodeEnvelope(Buffer.from(block.text, 'utf8'), LIMITS);
      const checked = envelope.ok ? validateComputeRequest(envelope.value) : envelope;
      if (checked.ok) throw new Error(`docs/messages.md:${block.line}: shown as refused, but it passes`);
      const headers = deadLetterHeaders(checked.code, checked.reason, 'compute.compute-1');
      expect(shown, `docs/messages.md:${block.line}`).toEqual(Object.entries(headers).map(([name, value]) => `${name}: ${value}`));
    }
  });

  it('lists every dead-letter code with its one meaning, as the catalogue has it', () => {
    const rows = [...doc.matchAll(/^\| `([A-Z0-9_]+)` \| (.+) \|$/gm)].filter(([, code]) => (DEAD_LETTER_CODES as readonly string[]).includes(code!));
    expect(Object.fromEntries(rows.map(([, code, meaning]) => [code, meaning]))).toEqual(DEAD_LETTER_MEANINGS);
  });

  it('names every instance event, and shows each event the compute host sends', () => {
    for (const name of INSTANCE_EVENTS) expect(doc, name).toContain(`\`${name}\``);
    const shown = envelopes.map(decoded).filter((e) => e.kind === 'event').map((e) => e.body as unknown as InstanceEvent);
    expect(new Set(shown.map((e) => e.event))).toEqual(new Set(INSTANCE_EVENTS));
    // The crash event, and a SOFT reboot that ended HARD.
    expect(shown.some((e) => e.event === 'power.off' && e.state === 'error' && e.fault?.code === 'GUEST_CRASHED')).toBe(true);
    expect(shown.some((e) => e.event === 'reboot.end' && e.requested_type === 'SOFT' && e.type === 'HARD')).toBe(true);
  });

  it('has Python examples that are Python, and the complete one does what the contract asks', () => {
    const python = blocks.filter((b) => b.lang === 'python');
    expect(python.length).toBeGreaterThanOrEqual(2);
    for (const block of python) {
      const parsed = spawnSync('python3', ['-c', 'import ast, sys; ast.parse(sys.stdin.read())'], { input: block.text, encoding: 'utf8' });
      expect(parsed.status, `docs/messages.md:${block.line}: ${parsed.stderr}`).toBe(0);
    }
    const complete = python.find((b) => b.text.includes('envelope("build"'))!.text;
    for (const needed of ['pika.BlockingConnection', 'content_type="application/json"', 'delivery_mode=2', 'routing_key=f"instance.{instance_uuid}.#"', 'reply_to=', 'correlation_id=', '"create.end"', 'envelope("list", {})']) {
      expect(complete, needed).toContain(needed);
    }
    // It declares nothing but its own queues: no exchange, no named queue.
    expect(complete).not.toMatch(/exchange_declare/);
    expect([...complete.matchAll(/queue_declare\(([^)]*)\)/g)].map((m) => m[1])).toEqual(['queue="", exclusive=True', 'queue="", exclusive=True']);
  });
});
