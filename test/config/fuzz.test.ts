import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../config/config-error.js';
import { describeConfig } from '../../config/config-report.js';
import { loadConfig, parseConfigText } from '../../config/load-config.js';
import type { LoadedConfig } from '../../config/novalet-config.js';
import { OPTION_DEFINITIONS } from '../../config/option-definitions.js';
import { runNovalet } from '../support/run-novalet.js';

/** mulberry32: a tiny deterministic PRNG, so a failure can be replayed. */
function mulberry32(seed: number): () => number {
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
const SEED = Number(process.env.FUZZ_SEED ?? 0x6e6f7661); // "nova"
const CASES = 2500;
const FIXTURE = path.resolve(import.meta.dirname, '../fixtures/config/nova-compute-deployment.conf');

// The deployment nova.conf plus every novalet option set, with references.
const BASE = Buffer.from(
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
const SECRETS = ['Zq8s!pWd', 'Nova-Keystone-Pass', 'Cinder-Pass-42', 'Neutron-Pass-7', 'Met4data-Shar3d', 'Db-S3cret'];
const OPTION_NAMES = [...new Set(OPTION_DEFINITIONS.flatMap((d) => [d.name, ...d.deprecatedNames.map((o) => o.name)]))];
const SECTIONS = ['[DEFAULT]', '[libvirt]', '[scheduler]', '[api]', '[filter_scheduler]', '[LIBVIRT]', '[', '[]', '[x', 'x]', '[ DEFAULT ]'];

type Rng = () => number;
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

function mutate(rng: Rng): Buffer {
  const lines = splitLines(BASE);
  const count = 1 + int(rng, 4);
  for (let k = 0; k < count; k++) pick(rng, MUTATIONS)(rng, lines);
  const joined = Buffer.concat(lines.flatMap((l, i) => (i === 0 ? [l] : [Buffer.from(pick(rng, ['\n', '\n', '\n', '\r\n', '\r'])), l])));
  return joined;
}

/** Loaded values must have the types the option table promises. */
function checkTypes(loaded: LoadedConfig): void {
  for (const def of OPTION_DEFINITIONS) {
    const value: unknown = (loaded.values[def.section] as unknown as Record<string, unknown>)[def.name];
    if (value === null) {
      expect(def.default === null || def.type.kind === 'float' || def.type.kind === 'int', def.name).toBe(true);
      continue;
    }
    switch (def.type.kind) {
      case 'int':
      case 'port':
        expect(Number.isSafeInteger(value), def.name).toBe(true);
        break;
      case 'float':
        expect(Number.isFinite(value), def.name).toBe(true);
        break;
      case 'bool':
        expect(typeof value, def.name).toBe('boolean');
        break;
      case 'list':
        if (def.type.portItems) expect(Array.isArray(value) && value.every((v) => Number.isInteger(v) && v >= 1 && v <= 65535), def.name).toBe(true);
        else expect(Array.isArray(value) && value.every((v) => typeof v === 'string'), def.name).toBe(true);
        break;
      case 'choice':
        expect(def.type.choices.map((c) => c.value), def.name).toContain(value);
        break;
      case 'string':
        expect(typeof value, def.name).toBe('string');
    }
  }
}

describe(`fuzz: ${CASES} seeded mutations of a valid nova.conf`, () => {
  const work = mkdtempSync(path.join(tmpdir(), 'novalet-fuzz-'));
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it('the unmutated base loads', () => {
    const loaded = parseConfigText(BASE, '/fuzz/nova.conf');
    expect(loaded.values.scheduler.max_attempts).toBe(4);
    expect(loaded.values.libvirt.connection_uri).toBe('qemu:///embed?root=/var/lib/nova/libvirt');
  });

  it('every mutation loads or fails with a one-line ConfigError that starts with the file path', () => {
    const rng = mulberry32(SEED);
    const outcomes = new Map<string, number>();
    const started = Date.now();
    for (let n = 0; n < CASES; n++) {
      const bytes = mutate(rng);
      // Every 50th case goes through a real file and loadConfig; the rest through parseConfigText.
      const viaFile = n % 50 === 0;
      const file = viaFile ? path.join(work, `case-${n}.conf`) : `/fuzz/case-${n}/nova.conf`;
      if (viaFile) writeFileSync(file, bytes);
      try {
        const loaded = viaFile ? loadConfig({ configFiles: [file] }) : parseConfigText(bytes, file);
        checkTypes(loaded);
        const report = JSON.stringify(describeConfig(loaded));
        for (const secret of SECRETS) expect(report, `case ${n}`).not.toContain(secret);
        outcomes.set('loaded', (outcomes.get('loaded') ?? 0) + 1);
      } catch (err) {
        if (!(err instanceof ConfigError)) {
          throw new Error(`case ${n} (seed ${SEED}) threw ${String(err)}; input: ${JSON.stringify(bytes.toString('latin1').slice(0, 2000))}`);
        }
        expect(err.message, `case ${n}`).not.toMatch(/[\n\r\u2028\u2029]/);
        expect(err.message.startsWith(`${file}:`), `case ${n}: ${err.message}`).toBe(true);
        for (const secret of SECRETS) expect(err.message, `case ${n}`).not.toContain(secret);
        outcomes.set(err.code, (outcomes.get(err.code) ?? 0) + 1);
      }
    }
    if (process.env.FUZZ_SEED) console.log(SEED, Object.fromEntries(outcomes), `${Date.now() - started} ms`);
    // The mutations reach every kind of outcome (how fast is bench/config-fuzz.ts's business, not a test's).
    expect(outcomes.get('loaded')).toBeGreaterThan(100);
    for (const code of ['CONFIG_PARSE', 'CONFIG_INVALID_VALUE', 'CONFIG_SUBSTITUTION', 'CONFIG_CPU_RULE']) {
      expect(outcomes.get(code) ?? 0, code).toBeGreaterThan(3);
    }
    expect([...outcomes.values()].reduce((a, b) => a + b, 0)).toBe(CASES);
  });
});

describe('bombs, secrets and files that are no configuration, through the command', () => {
  const work = mkdtempSync(path.join(tmpdir(), 'novalet-fuzz-cli-'));
  afterAll(() => rmSync(work, { recursive: true, force: true }));
  let counter = 0;
  const conf = (text: string | Buffer, name = `c${++counter}.conf`): string => {
    const file = path.join(work, name);
    writeFileSync(file, text);
    return file;
  };
  // A command that hangs or grows is stopped, so the test fails instead of taking the machine.
  const BOUNDED = ['timeout', '20', 'prlimit', `--as=${4 * 1024 ** 3}`];
  const novalet = (args: string[]) => runNovalet(args, { prefix: BOUNDED });
  /** Exit 2 with one line on stderr (a command that hangs is ended by BOUNDED's timeout and fails the test with 124). */
  async function refused(args: string[], expected: string | RegExp): Promise<string> {
    const run = await novalet(args);
    expect(run.status, run.stderr).toBe(2);
    expect(run.stdout).toBe('');
    expect(run.stderr.split('\n').filter(Boolean)).toHaveLength(1);
    if (typeof expected === 'string') expect(run.stderr).toContain(expected);
    else expect(run.stderr).toMatch(expected);
    return run.stderr;
  }

  it('size bombs: doubling substitution, a huge line, /dev/zero', async () => {
    const doubling = Array.from({ length: 26 }, (_, i) => `v${i + 2} = $v${i + 1}$v${i + 1}`).join('\n');
    const bomb = conf(`[DEFAULT]\nv1 = x\n${doubling}\nhost = $v27\n`);
    await refused(['config', 'show', '--config-file', bomb], `${bomb}:19: [DEFAULT] v18 = '$v17$v17' expands to more than 64 KiB`);
    await refused(['validate', '--config-file', bomb], 'expands to more than 64 KiB');
    const huge = conf(`[DEFAULT]\nhost = ${'x'.repeat(2 * 1024 * 1024)}\n`);
    await refused(['config', 'show', '--config-file', huge], `${huge}: the configuration file is larger than 1 MiB`);
    // Under the limit a long line is only a long value.
    const long = conf(`[DEFAULT]\nhost = ${'x'.repeat(900_000)}\n`);
    expect((await novalet(['config', 'show', '--json', '--config-file', long])).status).toBe(0);
    await refused(['config', 'show', '--config-file', '/dev/zero'], '/dev/zero: the configuration file is a character device;');
    await refused(['validate', '--config-file', '/dev/zero'], '/dev/zero: the configuration file is a character device;');
  });

  it('a FIFO, given or in a --config-dir, and a folder given as a file', async () => {
    const fifo = path.join(work, 'fifo.conf');
    expect(spawnSync('mkfifo', [fifo]).status).toBe(0);
    await refused(['config', 'show', '--config-file', fifo], `${fifo}: the configuration file is a FIFO;`);
    const dir = mkdtempSync(path.join(work, 'dir-'));
    writeFileSync(path.join(dir, '10-good.conf'), '[DEFAULT]\ndebug = true\n');
    expect(spawnSync('mkfifo', [path.join(dir, '20-fifo.conf')]).status).toBe(0);
    await refused(['config', 'show', '--config-dir', dir], `${dir}/20-fifo.conf: the configuration file is a FIFO; only a regular file is read as configuration. Only regular files ending in .conf belong in a --config-dir.`);
    await refused(['validate', '--config-dir', dir], `${dir}/20-fifo.conf: the configuration file is a FIFO;`);
    await refused(['config', 'show', '--config-file', work], `${work}: the configuration file is a directory;`);
  });

  it('a password never shows through substitution, in config show or in validate errors', async () => {
    const PASSWORD = 'Hunter2-marker-pw';
    const base = `[DEFAULT]\ntransport_url = rabbit://admin:${PASSWORD}@rmq1:5672/\n`;
    const tainted = conf(`${base}host = $transport_url\nstate_path = ${work}/state-\${keystone_authtoken.password}\n[keystone_authtoken]\npassword = ${PASSWORD}\n`);
    for (const args of [['config', 'show'], ['config', 'show', '--json']]) {
      const run = await novalet([...args, '--config-file', tainted]);
      expect(run.status).toBe(0);
      expect(run.stdout + run.stderr).not.toContain(PASSWORD);
    }
    expect((await novalet(['config', 'show', '--json', '--show-secrets', '--config-file', tainted])).stdout).toContain(PASSWORD);
    const secretPassword = `\n[keystone_authtoken]\npassword = ${PASSWORD}\n`;
    for (const [rest, problem] of [
      ['report_interval = $transport_url', 'is not an integer'],
      [`report_interval = \${keystone_authtoken.password}${secretPassword}`, 'is not an integer'],
      ['state_path = /proc/$transport_url', 'is under /proc'],
      [`state_path = ${work}/\${keystone_authtoken.password}\ninstances_path = /sys/$state_path${secretPassword}`, 'is under /sys'],
      ['[libvirt]\ncpu_model_extra_flags = $transport_url', 'is not a CPU flag'],
      ['[libvirt]\nvirt_type = $transport_url', 'is not allowed'],
      ['[libvirt]\ncpu_mode = custom\ncpu_models = $transport_url', "cpu_models = '$transport_url' (after substitution"],
    ]) {
      const stderr = await refused(['validate', '--config-file', conf(`${base}${rest}\n`)], problem!);
      expect(stderr).not.toContain(PASSWORD);
    }
  });

  it('a file that is no configuration: nothing of it is shown', async () => {
    const MARKER = 'MARKER-shadow-7f3a9c';
    const shadow = conf(
      [`root:$y$j9T$${MARKER}$Zx0:19700:0:99999:7:::`, 'daemon:*:19700:0:99999:7:::', `${MARKER}:!:19700::::::`].join('\n') + '\n',
      'shadow',
    );
    for (const args of [['validate', '--config-file', shadow], ['config', 'show', '--config-file', shadow], ['validate', '--json', '--config-file', shadow]]) {
      const stderr = await refused(args, `${shadow}:1: `);
      expect(stderr).not.toContain(MARKER);
      expect(stderr).not.toContain('root');
    }
    const dir = mkdtempSync(path.join(work, 'etc-'));
    copyFileSync(shadow, path.join(dir, 'shadow.conf'));
    expect(await refused(['config', 'show', '--config-dir', dir], 'shadow.conf:1: ')).not.toContain(MARKER);
  });

  it('state folders: /proc spun and a regular file was a stack trace; config show still shows them', async () => {
    const proc = conf('[DEFAULT]\nstate_path = /proc/nope\n');
    await refused(['validate', '--config-file', proc], `${proc}:2: [DEFAULT] state_path = '/proc/nope' is under /proc`);
    const file = conf('x');
    const onFile = conf(`[DEFAULT]\nstate_path = ${file}\n`);
    await refused(['validate', '--config-file', onFile], `${onFile}:2: [DEFAULT] state_path = '${file}' is a regular file, where a folder should be.`);
    await refused(['cpu-baseline', '--config-file', onFile, file], 'is a regular file, where a folder should be.');
    const shown = await novalet(['config', 'show', '--config-file', proc]);
    expect(shown.status).toBe(0);
    expect(shown.stdout).toContain(`state_path = /proc/nope    # ${proc}:2`);
  });
});
