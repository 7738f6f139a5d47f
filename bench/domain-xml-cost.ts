/**
 * What each part of novalet's domain XML costs at start-up (issue 10): on one
 * warm embedded root, define + create (until libvirt reports the domain
 * running) of
 *
 * (a) a minimal direct-kernel domain — 256 MiB, one vCPU, the serial console
 *     to a file, nothing else, as one would hand it to `virsh create`;
 * (b) novalet's domain for the same guest as hypervisor/instance/domain-xml.ts
 *     builds it (TCG, type qemu, the guest CPU the driver checks for
 *     virt_type = qemu, the test guest's kernel and initramfs and a qcow2
 *     overlay on its disk as the root disk);
 * (c) variants of (b) each with one part removed, or of (a) with one part added;
 * and (a) once more through `virsh -t create` (virsh's own timing), to tell
 * libvirt's cost from that of novalet's binding.
 *
 * libvirt's own debug log of its QEMU process code (qemu_process) says how
 * long each start spent verifying the guest CPU — ~400 QMP qom-get round
 * trips for every x86 guest with QEMU 7.2, whatever its XML, and the part
 * that grows most with the machine's load — so the table gives the rest too.
 *
 * Variants run interleaved round-robin (the order rotates each round), so
 * every one sees the same noise; each is reported against (a) of the same run.
 * Destroy is not timed: it takes 1.2–1.8 s here, all of it waiting for
 * libvirt to notice that QEMU exited (bench/RESULTS.md).
 *
 *   npm run build && node dist/bench/domain-xml-cost.js [rounds]
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseConfigText } from '../config/load-config.js';
import { assembleComputeHost } from '../hypervisor/compute-host.js';
import { emulatorFor } from '../hypervisor/host/tools.js';
import { buildDomainXml, domainNameFor, type DomainDefinition } from '../hypervisor/instance/domain-xml.js';
import { createOverlay } from '../hypervisor/instance/qemu-img.js';
import type { LibvirtDomain } from '../hypervisor/libvirt/domain.js';
import { prepareEmbeddedRoot } from '../hypervisor/libvirt/embedded-root.js';
import { openEmbeddedRootFromPool } from '../hypervisor/libvirt/embedded-root-pool.js';
import { XMLBuilder, XMLParser } from '../hypervisor/libvirt/fast-xml-parser.js';
import { runForkSafe } from '../hypervisor/libvirt/fork-safety.js';
import { readBootId } from '../hypervisor/virt-type/self-test.js';
import { testGuestCmdline, testGuestFiles } from '../hypervisor/virt-type/test-guest.js';

// libvirt cannot fork QEMU from a plainly started node: see hypervisor/libvirt/fork-safety.ts.
const relaunched = await runForkSafe();
if (relaunched !== null) process.exit(relaunched);
const rounds = Math.max(1, Number(process.argv[2] ?? 7));
const guest = testGuestFiles(process.env.NOVALET_TEST_GUEST_DIR ?? '/var/lib/novalet/test-guest');
const MEMORY = 256;
/** Domains of this benchmark that are not novalet's are named so, and removed at the start if a killed run left them. */
const OWN_PREFIX = 'dxc-';
const work = mkdtempSync(path.join(tmpdir(), 'novalet-dxc-'));
// Before libvirt starts (its first connection reads these); a file output is safe in the relaunched process.
const LIBVIRT_LOG = path.join(work, 'libvirt.log');
const LOG_FILTERS = '1:qemu.qemu_process';
process.env.LIBVIRT_LOG_FILTERS = LOG_FILTERS;
process.env.LIBVIRT_LOG_OUTPUTS = `1:file:${LIBVIRT_LOG}`;

type Node = Record<string, unknown>;
const xmlOptions = { ignoreAttributes: false, attributeNamePrefix: '@_' } as const;
const parser = new XMLParser({ ...xmlOptions, parseTagValue: false, parseAttributeValue: false });
const builder = new XMLBuilder({ ...xmlOptions, format: true, suppressEmptyNode: true });

/** One creation's own names and files. */
interface Ids {
  uuid: string;
  consoleLog: string;
  disk: string;
}

const config = parseConfigText(`[DEFAULT]\nstate_path = ${work}\n[libvirt]\nvirt_type = qemu\n`, 'bench.conf').values;
const { connection, root } = await openEmbeddedRootFromPool('/var/tmp/novalet-bench-libvirt');
const host = await assembleComputeHost({ config, purpose: 'command', selfTest: 'recorded', connection });
const bootId = await readBootId();
const emulator = emulatorFor(host.tools.qemuEmulators, host.probe.arch);
// The CPU every launch of this host's architecture gets (host-model under TCG, by default).
const { cpu, setting: cpuSetting } = await host.driver.guestCpu('qemu', false);

function novaletDefinition(ids: Ids): DomainDefinition {
  return {
    uuid: ids.uuid,
    domainName: domainNameFor(ids.uuid),
    virtType: 'qemu',
    arch: host.probe.arch,
    machine: null,
    emulator,
    vcpus: 1,
    memoryMiB: MEMORY,
    disk: { path: ids.disk, format: 'qcow2' },
    kernel: guest.kernel,
    initrd: guest.initramfs,
    cmdline: testGuestCmdline('dxc'),
    consoleLog: ids.consoleLog,
    cpu,
    metadata: {
      name: 'dxc',
      createdAt: new Date().toISOString(),
      vcpus: 1,
      memoryMiB: MEMORY,
      image: guest.disk,
      virtType: 'qemu',
      virtTypeReason: 'virt_type = qemu was chosen.',
      // As a command's: the next start-up sweep (instance/leftovers.ts) removes what a killed run left.
      owner: { kind: 'command', pid: process.pid, bootId },
    },
  };
}

/** novalet's <domain> as data, to take a part out of. */
function novalet(ids: Ids, change: (def: DomainDefinition) => void = () => undefined): Node {
  const def = novaletDefinition(ids);
  change(def);
  return (parser.parse(buildDomainXml(def)) as { domain: Node }).domain;
}

function minimal(ids: Ids): Node {
  return {
    '@_type': 'qemu',
    name: `${OWN_PREFIX}${ids.uuid}`,
    uuid: ids.uuid,
    memory: { '@_unit': 'MiB', '#text': MEMORY },
    vcpu: 1,
    os: { type: { '@_arch': host.probe.arch, '#text': 'hvm' }, kernel: guest.kernel, initrd: guest.initramfs, cmdline: testGuestCmdline('dxc') },
    devices: { serial: { '@_type': 'file', source: { '@_path': ids.consoleLog }, target: { '@_port': 0 } } },
  };
}

const devicesOf = (d: Node) => d.devices as Node;
const osOf = (d: Node) => d.os as Node;
const rootDisk = (ids: Ids): Node => devicesOf(novalet(ids)).disk as Node;

interface Variant {
  name: string;
  domain(ids: Ids): Node;
  /** Times the creation some other way than through novalet's binding. */
  viaVirsh?: true;
}

const VARIANTS: Variant[] = [
  { name: '(a) minimal direct-kernel domain', domain: minimal },
  { name: '(a) by `virsh -t create` on an embedded root of its own', domain: minimal, viaVirsh: true },
  { name: '(b) novalet, as domain-xml.ts builds it', domain: (ids) => novalet(ids) },
  { name: '(b) without `<cpu>` (cpu_mode none)', domain: (ids) => novalet(ids, (def) => void (def.cpu = null)) },
  { name: '(b) with `<cpu>` custom qemu64, check none', domain: (ids) => novalet(ids, (def) => void (def.cpu = { mode: 'custom', model: 'qemu64', features: [], check: 'none' })) },
  { name: '(b) without the root disk (qcow2 overlay)', domain: (ids) => novalet(ids, (def) => void (def.disk = null)) },
  { name: '(b) booting the disk instead of the kernel', domain: (ids) => novalet(ids, (def) => Object.assign(def, { kernel: null, initrd: null, cmdline: null })) },
  {
    name: '(b) without `<sysinfo>` and `<smbios>`',
    domain: (ids) => {
      const d = novalet(ids);
      delete d.sysinfo;
      delete osOf(d).smbios;
      return d;
    },
  },
  { name: '(b) without `<features>` acpi, apic', domain: (ids) => without(novalet(ids), 'features') },
  {
    name: '(b) without `<metadata>` and `<title>`',
    domain: (ids) => without(without(novalet(ids), 'metadata'), 'title'),
  },
  { name: '(b) without the on_* policies', domain: (ids) => without(without(without(novalet(ids), 'on_poweroff'), 'on_reboot'), 'on_crash') },
  { name: '(b) without `<emulator>` (libvirt picks it)', domain: (ids) => withoutDevice(novalet(ids), 'emulator') },
  { name: '(b) without memballoon none (virtio balloon)', domain: (ids) => withoutDevice(novalet(ids), 'memballoon') },
  { name: '(b) with libvirt\'s default USB controller (before issue 10)', domain: (ids) => withoutDevice(novalet(ids), 'controller') },
  {
    name: '(b) serial without append',
    domain: (ids) => {
      const d = novalet(ids);
      delete ((devicesOf(d).serial as Node).source as Node)['@_append'];
      return d;
    },
  },
  { name: '(b) machine q35 instead of pc', domain: (ids) => novalet(ids, (def) => void (def.machine = 'q35')) },
  {
    name: '(a) with novalet\'s `<cpu>`',
    domain: (ids) => {
      const d = minimal(ids);
      const withCpu = novalet(ids).cpu;
      if (withCpu !== undefined) d.cpu = withCpu;
      return d;
    },
  },
  {
    name: '(a) with novalet\'s root disk',
    domain: (ids) => {
      const d = minimal(ids);
      d.devices = { disk: rootDisk(ids), ...devicesOf(d) };
      return d;
    },
  },
];

function without(d: Node, key: string): Node {
  delete d[key];
  return d;
}

function withoutDevice(d: Node, key: string): Node {
  delete devicesOf(d)[key];
  return d;
}

function xmlOf(domain: Node): string {
  return builder.build({ domain }) as string;
}

const disks = await Promise.all(
  VARIANTS.map(async (_, index) => {
    const disk = path.join(work, `disk-${index}.qcow2`);
    await createOverlay(guest.disk, 'qcow2', disk);
    return disk;
  }),
);

// virsh's own root: libvirt lets one process embed a root, and this one holds a root of the pool.
const VIRSH_ROOT = '/var/tmp/novalet-bench-virsh';
const virshUri = await prepareEmbeddedRoot(VIRSH_ROOT);

/** `virsh -t create` of a transient domain: virsh's own timing of the create command (libvirt's event loop, no Node). */
async function virshCreate(xml: string, name: string): Promise<Timing> {
  const file = path.join(work, 'virsh.xml');
  const log = path.join(work, 'virsh-libvirt.log');
  writeFileSync(file, xml);
  rmSync(log, { force: true });
  const env = { ...process.env, LIBVIRT_LOG_FILTERS: LOG_FILTERS, LIBVIRT_LOG_OUTPUTS: `1:file:${log}` };
  const virsh = spawn('virsh', ['-c', virshUri, '-t', `create ${file}; destroy ${name}`], { stdio: ['ignore', 'pipe', 'pipe'], env });
  let out = '';
  let err = '';
  virsh.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
  virsh.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
  const code = await new Promise<number | null>((resolve) => virsh.on('close', resolve));
  const time = /created from[^\n]*\n+\(Time: ([\d.]+) ms\)/.exec(out)?.[1];
  rmSync(qemuLog(VIRSH_ROOT, name), { force: true });
  if (code !== 0 || time === undefined) throw new Error(`virsh exited ${code}: ${out}${err}`);
  return { ms: Number(time), cpuCheckMs: cpuCheckIn(readFileSync(log, 'utf8')) };
}

interface Timing {
  /** define + create, until running. */
  ms: number;
  /** Of which libvirt spent verifying the guest CPU (its log, "Verifying and updating provided guest CPU"). */
  cpuCheckMs: number;
}

const stamp = (line: string | undefined) => (line ? Date.parse(`${line.slice(0, 23).replace(' ', 'T')}Z`) : NaN);

/** The CPU verification's length in a stretch of libvirt's qemu_process log holding one start. */
function cpuCheckIn(log: string): number {
  const lines = log.split('\n');
  const from = stamp(lines.find((l) => l.includes('Verifying and updating provided guest CPU')));
  const to = stamp(lines.find((l) => l.includes('Detecting IOThread PIDs')));
  if (Number.isNaN(from) || Number.isNaN(to)) throw new Error(`libvirt's log (${LIBVIRT_LOG}) has no guest CPU verification: is LIBVIRT_LOG_FILTERS honoured?`);
  return to - from;
}

let logOffset = 0;
/** What libvirt logged since the last call. */
function newLog(): string {
  const text = readFileSync(LIBVIRT_LOG, 'utf8');
  const fresh = text.slice(logOffset);
  logOffset = text.length;
  return fresh;
}

/** define + create until running; the domain is removed afterwards (not timed). */
async function createOnce(index: number): Promise<Timing> {
  const variant = VARIANTS[index]!;
  const ids: Ids = { uuid: randomUUID(), consoleLog: path.join(work, `console-${index}.log`), disk: disks[index]! };
  const xml = xmlOf(variant.domain(ids));
  if (variant.viaVirsh) return virshCreate(xml, `${OWN_PREFIX}${ids.uuid}`);
  let domain: LibvirtDomain | null = null;
  newLog();
  const start = performance.now();
  try {
    domain = await connection.defineDomain(xml);
    await domain.create();
    const ms = performance.now() - start;
    return { ms, cpuCheckMs: cpuCheckIn(newLog()) };
  } catch (err) {
    throw new Error(`${variant.name}: ${(err as Error).message}\n${xml}`);
  } finally {
    await domain?.remove();
    await domain?.free();
    // libvirt keeps each domain's QEMU log (its command line, its stderr) in the root.
    if (domain) rmSync(qemuLog(root, domain.name), { force: true });
  }
}

function qemuLog(libvirtRoot: string, name: string): string {
  return path.join(libvirtRoot, 'log', 'qemu', `${name}.log`);
}

async function removeOwnLeftovers(): Promise<void> {
  for (const d of await connection.listAllDomains()) {
    if (d.name.startsWith(OWN_PREFIX)) {
      await d.remove();
      rmSync(qemuLog(root, d.name), { force: true });
    }
    await d.free();
  }
}

const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);
const pct = (xs: number[], p: number) => sorted(xs)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))] ?? NaN;
const median = (xs: number[]) => {
  const s = sorted(xs);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};
const signed = (ms: number) => `${ms >= 0 ? '+' : '−'}${Math.abs(ms).toFixed(0)}`;

try {
  await removeOwnLeftovers();
  console.log(`guest CPU of (b): ${cpuSetting}; ${VARIANTS.length} variants, ${rounds} rounds, interleaved\n`);
  // Warm-up: QEMU, the kernel and the images in the page cache; libvirt's caches.
  for (let v = 0; v < VARIANTS.length; v++) await createOnce(v);
  const timings: Timing[][] = VARIANTS.map(() => []);
  for (let r = 0; r < rounds; r++) {
    for (let k = 0; k < VARIANTS.length; k++) {
      const v = (k + r) % VARIANTS.length;
      timings[v]!.push(await createOnce(v));
    }
  }
  const total = (v: number) => timings[v]!.map((t) => t.ms);
  const rest = (v: number) => timings[v]!.map((t) => t.ms - t.cpuCheckMs);
  const cpuCheck = (v: number) => timings[v]!.map((t) => t.cpuCheckMs);
  const vsBase = (xs: number[], base: number[], v: number) => (v === 0 ? '—' : signed(median(xs) - median(base)));
  console.log('| variant | runs | create median ms | p90 ms | Δ vs (a) | of which CPU check, median | create without it, median | p90 | Δ vs (a) |');
  console.log('|---|---|---|---|---|---|---|---|---|');
  VARIANTS.forEach((variant, v) => {
    const cells = [
      variant.name,
      String(timings[v]!.length),
      median(total(v)).toFixed(0),
      pct(total(v), 90).toFixed(0),
      vsBase(total(v), total(0), v),
      median(cpuCheck(v)).toFixed(0),
      median(rest(v)).toFixed(0),
      pct(rest(v), 90).toFixed(0),
      vsBase(rest(v), rest(0), v),
    ];
    console.log(`| ${cells.join(' | ')} |`);
  });
} finally {
  await removeOwnLeftovers().catch(() => undefined);
  await host.close();
  await connection.close();
  rmSync(work, { recursive: true, force: true });
}
