/**
 * The seeded mutations of a valid nova.conf that test/config/fuzz.test.ts
 * loads (every one must load or fail with a one-line ConfigError) and that
 * bench/config-fuzz.ts times: one generator, so that the benchmark measures
 * the very cases the test checks.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { LoadedConfig } from '../../config/novalet-config.js';
import { OPTION_DEFINITIONS } from '../../config/option-definitions.js';

/** mulberry32: a tiny deterministic PRNG, so a failure can be replayed. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// FUZZ_SEED=<n> explores another sequence; the default is fixed so CI is deterministic.
export const SEED = Number(process.env.FUZZ_SEED ?? 0x6e6f7661); // "nova"
export const CASES = 2500;
// test/fixtures from test/support, and from dist/test/support (a compiled benchmark: the fixtures are not compiled).
const FIXTURE = [path.resolve(import.meta.dirname, '../fixtures/config'), path.resolve(import.meta.dirname, '../../../test/fixtures/config')]
  .map((dir) => path.join(dir, 'nova-compute-deployment.conf'))
  .find((file) => existsSync(file))!;

// The deployment nova.conf plus every novalet option set, with references.
export const BASE = Buffer.from(
  readFileSync(FIXTURE, 'utf8').replace(/^\[libvirt\]\n/m, '[libvirt]\nconnection_uri = qemu:///embed?root=${DEFAULT.state_path}/libvirt\nfallback_virt_type = qemu\n') +
    '\n[DEFAULT]\ninitial_cpu_allocation_ratio = 2.0\nreserved_host_memory_mb = 1024\n\n[scheduler]\nmax_attempts = 4\n',
);

const INTERESTING_BYTES = [
  [0x00], [0xff], [0xfe], [0xc3], [0xe2, 0x82], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xc0, 0x80],
  [0xef, 0xbb, 0xbf], [0x0b], [0x0c], [0x1c], [0x85],
  ...'[]=:$\\{}.# ;"\'\t\r\n,+-_'.split('').map((c) => [c.charCodeAt(0)]),
];
const VALUES = [
  '', ' ', 'true', 'False', 'maybe', '0', '1', '-1', '3', '65535', '65536', '1.5', '-0.0', '1e308', '1e400', 'nan', 'inf',
  '9'.repeat(400), '99999999999999999999', '0x10', '1_000', '1__0', 'kvm', 'qemu', 'lxc', 'parallels', 'custom', 'host-model',
  'none', 'Nehalem', 'a,b,,c', ',', '$host', '${DEFAULT.state_path}', '$$', '\\$x', '$undefined_thing', '${libvirt.virt_type}',
  '${', '$', '"quoted"', "'", '+pcid', 'PCID, vm x', 'rabbit://u:p@h/', '\u00e9\u4e2d\u{1f600}',
  // Secrets of the fixture, through references.
  '$transport_url', '${DEFAULT.transport_url}', 'x-${transport_url}', '${keystone_authtoken.password}', 'a,${neutron.metadata_proxy_shared_secret}',
  '${cinder.password}/x', '$database.connection', '${oslo_messaging_notifications.transport_url}',
];
/** The fixture's passwords: no error message and no masked report may hold one. */
export const SECRETS = ['Zq8s!pWd', 'Nova-Keystone-Pass', 'Cinder-Pass-42', 'Neutron-Pass-7', 'Met4data-Shar3d', 'Db-S3cret'];
const OPTION_NAMES = [...new Set(OPTION_DEFINITIONS.flatMap((d) => [d.name, ...d.deprecatedNames.map((o) => o.name)]))];
const SECTIONS = ['[DEFAULT]', '[libvirt]', '[scheduler]', '[api]', '[filter_scheduler]', '[LIBVIRT]', '[', '[]', '[x', 'x]', '[ DEFAULT ]'];

export type Rng = () => number;
const pick = <T>(rng: Rng, items: readonly T[]): T => items[Math.floor(rng() * items.length)]!;
const int = (rng: Rng, n: number): number => Math.floor(rng() * n);

function splitLines(bytes: Buffer): Buffer[] {
  const lines: Buffer[] = [];
  let start = 0;
  for (let i = 0; i < bytes.length; i++) {
    if (bytes[i] === 0x0a) {
      lines.push(bytes.subarray(start, i));
      start = i + 1;
    }
  }
  lines.push(bytes.subarray(start));
  return lines;
}

const MUTATIONS: ((rng: Rng, lines: Buffer[]) => void)[] = [
  // delete a line
  (rng, lines) => void lines.splice(int(rng, lines.length), 1),
  // duplicate a line somewhere else
  (rng, lines) => void lines.splice(int(rng, lines.length + 1), 0, lines[int(rng, lines.length)] ?? Buffer.alloc(0)),
  // truncate a line
  (rng, lines) => {
    const i = int(rng, lines.length);
    lines[i] = lines[i]!.subarray(0, int(rng, lines[i]!.length + 1));
  },
  // insert stray bytes: NUL, invalid UTF-8, [ = $ \ and friends
  (rng, lines) => {
    const i = int(rng, lines.length);
    const at = int(rng, lines[i]!.length + 1);
    const bytes = Buffer.from(Array.from({ length: 1 + int(rng, 4) }, () => pick(rng, INTERESTING_BYTES)).flat());
    lines[i] = Buffer.concat([lines[i]!.subarray(0, at), bytes, lines[i]!.subarray(at)]);
  },
  // one random byte anywhere
  (rng, lines) => {
    const i = int(rng, lines.length);
    const line = Buffer.from(lines[i]!);
    if (line.length > 0) line[int(rng, line.length)] = int(rng, 256);
    lines[i] = line;
  },
  // flip a value's type: set a random known option to a random value
  (rng, lines) => {
    const line = `${pick(rng, OPTION_NAMES)}${pick(rng, [' = ', '=', ': ', ' =', ' : '])}${pick(rng, VALUES)}`;
    lines.splice(int(rng, lines.length + 1), 0, Buffer.from(line));
  },
  // replace the value of an existing assignment
  (rng, lines) => {
    const i = int(rng, lines.length);
    const text = lines[i]!.toString('latin1');
    const eq = text.indexOf('=');
    if (eq > 0) lines[i] = Buffer.concat([lines[i]!.subarray(0, eq + 1), Buffer.from(` ${pick(rng, VALUES)}`)]);
  },
  // a huge line, sometimes a huge number
  (rng, lines) => {
    const n = 1000 + int(rng, 60_000);
    const line = rng() < 0.5 ? `${pick(rng, OPTION_NAMES)} = ${'9'.repeat(n)}` : `${pick(rng, OPTION_NAMES)} = ${'x$'.repeat(n / 2)}`;
    lines.splice(int(rng, lines.length + 1), 0, Buffer.from(line));
  },
  // a section header, well or badly formed
  (rng, lines) => void lines.splice(int(rng, lines.length + 1), 0, Buffer.from(pick(rng, SECTIONS))),
  // indent a line (making it a continuation) or un-indent one
  (rng, lines) => {
    const i = int(rng, lines.length);
    lines[i] = rng() < 0.7 ? Buffer.concat([Buffer.from(pick(rng, [' ', '\t', '  '])), lines[i]!]) : Buffer.from(lines[i]!.toString('latin1').trimStart(), 'latin1');
  },
  // swap two lines
  (rng, lines) => {
    const i = int(rng, lines.length);
    const j = int(rng, lines.length);
    [lines[i], lines[j]] = [lines[j]!, lines[i]!];
  },
  // self-references and cycles
  (rng, lines) => {
    const a = pick(rng, ['host', 'state_path', 'instances_path', 'my_ip', 'listen']);
    const b = pick(rng, ['host', 'state_path', 'instances_path', 'my_ip', 'listen']);
    lines.splice(int(rng, lines.length + 1), 0, Buffer.from(`${a} = $${b}`), Buffer.from(`${b} = \${${a}}/x`));
  },
];

export function mutate(rng: Rng): Buffer {
  const lines = splitLines(BASE);
  const count = 1 + int(rng, 4);
  for (let k = 0; k < count; k++) pick(rng, MUTATIONS)(rng, lines);
  const joined = Buffer.concat(lines.flatMap((l, i) => (i === 0 ? [l] : [Buffer.from(pick(rng, ['\n', '\n', '\n', '\r\n', '\r'])), l])));
  return joined;
}

/** Where loaded values lack the types the option table promises: one line each (none when all is well). */
export function typeProblems(loaded: LoadedConfig): string[] {
  const problems: string[] = [];
  for (const def of OPTION_DEFINITIONS) {
    const value: unknown = (loaded.values[def.section] as unknown as Record<string, unknown>)[def.name];
    const wrong = (what: string): void => void problems.push(`[${def.section}] ${def.name} = ${JSON.stringify(value)} is not ${what}`);
    if (value === null) {
      if (!(def.default === null || def.type.kind === 'float' || def.type.kind === 'int')) wrong('allowed to be unset');
      continue;
    }
    switch (def.type.kind) {
      case 'int':
      case 'port':
        if (!Number.isSafeInteger(value)) wrong('a safe integer');
        break;
      case 'float':
        if (!Number.isFinite(value)) wrong('a finite number');
        break;
      case 'bool':
        if (typeof value !== 'boolean') wrong('a boolean');
        break;
      case 'list':
        if (def.type.portItems) {
          if (!(Array.isArray(value) && value.every((v) => Number.isInteger(v) && v >= 1 && v <= 65535))) wrong('a list of ports');
        } else if (!(Array.isArray(value) && value.every((v) => typeof v === 'string'))) wrong('a list of strings');
        break;
      case 'choice':
        if (!def.type.choices.map((c) => c.value).includes(value as never)) wrong('one of its choices');
        break;
      case 'string':
        if (typeof value !== 'string') wrong('a string');
    }
  }
  return problems;
}
