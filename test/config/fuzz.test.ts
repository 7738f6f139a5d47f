import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../config/config-error.js';
import { describeConfig } from '../../config/config-report.js';
import { loadConfig, parseConfigText } from '../../config/load-config.js';
import { BASE, CASES, mulberry32, mutate, SECRETS, SEED, typeProblems } from '../support/config-mutations.js';
import { runNovalet } from '../support/run-novalet.js';

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
        expect(typeProblems(loaded), `case ${n}`).toEqual([]);
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
