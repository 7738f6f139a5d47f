/**
 * deploy/novalet-compute.service: the directives the compute service relies
 * on, its ExecStart run for real (bash execs node in its own place, with the
 * descriptor layout hypervisor/libvirt/fork-safety.ts asks for), and the
 * unit as systemd reads it: `systemd-analyze verify` where it is installed,
 * and, where systemd is PID 1 and the test runs as root, a transient service
 * of the same type whose READY=1 systemd must take.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { OPTION_DEFINITIONS } from '../../config/option-definitions.js';

const TOP = path.resolve(import.meta.dirname, '../..');
const UNIT = path.join(TOP, 'deploy/novalet-compute.service');
const INSTALLED_NODE = '/usr/bin/node';
const INSTALLED_MAIN = '/opt/novalet/dist/cli/main.js';

/** systemd's unit syntax, as far as this unit uses it: sections, `Key=value` lines (repeatable), comments. */
function parseUnit(text: string): Map<string, Map<string, string[]>> {
  const sections = new Map<string, Map<string, string[]>>();
  let current: Map<string, string[]> | null = null;
  for (const [index, line] of text.replace(/\\\n/g, ' ').split('\n').entries()) {
    const trimmed = line.trim();
    if (trimmed === '' || trimmed.startsWith('#') || trimmed.startsWith(';')) continue;
    const section = /^\[([A-Za-z]+)\]$/.exec(trimmed);
    if (section) {
      current = new Map();
      sections.set(section[1]!, current);
      continue;
    }
    const assignment = /^([A-Za-z][A-Za-z0-9]*)=(.*)$/.exec(trimmed);
    if (!assignment || current === null) throw new Error(`line ${index + 1} is not a unit-file line: ${trimmed}`);
    current.set(assignment[1]!, [...(current.get(assignment[1]!) ?? []), assignment[2]!.trim()]);
  }
  return sections;
}

const text = readFileSync(UNIT, 'utf8');
const unit = parseUnit(text);
const one = (section: string, key: string): string | undefined => {
  const values = unit.get(section)?.get(key);
  expect(values?.length ?? 0, `${section} ${key}`).toBeLessThanOrEqual(1);
  return values?.[0];
};

/** The script of `ExecStart=/bin/bash -c '…'`. */
function execStartScript(): string {
  const exec = one('Service', 'ExecStart')!;
  const match = /^\/bin\/bash -c '([^']*)'$/.exec(exec);
  if (!match) throw new Error(`ExecStart is not /bin/bash -c '…': ${exec}`);
  return match[1]!;
}

const folders: string[] = [];
afterEach(() => {
  for (const folder of folders.splice(0)) rmSync(folder, { recursive: true, force: true });
});

describe('deploy/novalet-compute.service', () => {
  it('is a Type=notify service whose main process alone may notify', () => {
    expect(one('Service', 'Type')).toBe('notify');
    expect(one('Service', 'NotifyAccess')).toBe('main');
  });

  it('runs `novalet compute` on the installed configuration', () => {
    // --max-semi-space-size=2: the agent's resident memory (bench/RESULTS.md, the compute service).
    expect(execStartScript()).toMatch(new RegExp(`^exec ${INSTALLED_NODE} --max-semi-space-size=2 ${INSTALLED_MAIN} compute --config-file /etc/novalet/novalet.conf( [0-9]+</dev/null)+$`));
    // Two malloc arenas, for the same reason; bench/agent-process.ts reads both from here.
    expect(one('Service', 'Environment')).toBe('MALLOC_ARENA_MAX=2');
  });

  it('restarts on failure after 5 s, signals the agent alone on stop (guests live on), and keeps its state in /var/lib/novalet', () => {
    expect(one('Service', 'Restart')).toBe('on-failure');
    expect(one('Service', 'RestartSec')).toBe('5');
    expect(one('Service', 'KillMode')).toBe('process');
    expect(one('Service', 'StateDirectory')).toBe('novalet');
    const statePath = OPTION_DEFINITIONS.find((option) => option.section === 'DEFAULT' && option.name === 'state_path')!;
    expect(statePath.default).toBe('/var/lib/novalet');
  });

  it('reloads with SIGHUP to the main process (systemctl reload), which the agent takes as a configuration reload', () => {
    expect(one('Service', 'ExecReload')).toBe('/bin/kill -HUP $MAINPID');
  });

  it('waits longer for a stop than graceful_shutdown_timeout allows the agent', () => {
    const graceful = OPTION_DEFINITIONS.find((option) => option.section === 'DEFAULT' && option.name === 'graceful_shutdown_timeout')!;
    expect(Number(one('Service', 'TimeoutStopSec'))).toBeGreaterThan(Number(graceful.default));
  });

  it('starts after the network and the broker, logs to the journal, and is wanted by multi-user.target', () => {
    expect(one('Unit', 'Description')).toBe('novalet compute agent');
    expect(one('Unit', 'After')!.split(/\s+/)).toEqual(expect.arrayContaining(['network-online.target', 'rabbitmq-server.service']));
    expect(one('Unit', 'Wants')).toBe('network-online.target');
    expect(one('Service', 'StandardOutput')).toBe('journal');
    expect(one('Install', 'WantedBy')).toBe('multi-user.target');
  });

  it('leaves WatchdogSec commented out, with why', () => {
    expect(unit.get('Service')!.has('WatchdogSec')).toBe(false);
    expect(text).toMatch(/^#WatchdogSec=\d+$/m);
    expect(text).toContain('WATCHDOG=1 every WatchdogSec/2');
  });

  it("ExecStart, run as systemd runs it: node keeps bash's pid and starts with descriptors 3 to 12 on /dev/null, so novalet does not relaunch itself", () => {
    const folder = mkdtempSync(path.join(tmpdir(), 'novalet-unit-'));
    folders.push(folder);
    const probe = path.join(folder, 'probe.mjs');
    const forkSafety = pathToFileURL(path.join(TOP, 'dist/hypervisor/libvirt/fork-safety.js')).href;
    writeFileSync(probe, `const { hasForkSafeLayout } = await import(${JSON.stringify(forkSafety)});\nconsole.log(JSON.stringify({ pid: process.pid, layout: hasForkSafeLayout(), args: process.argv.slice(2) }));\n`);
    const script = execStartScript().replace(INSTALLED_NODE, process.execPath).replace(INSTALLED_MAIN, probe);
    const run = spawnSync('/bin/bash', ['-c', script], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    expect(run.stderr).toBe('');
    const report = JSON.parse(run.stdout) as { pid: number; layout: boolean; args: string[] };
    expect(report.layout).toBe(true);
    expect(report.args).toEqual(['compute', '--config-file', '/etc/novalet/novalet.conf']);
    // The pid: spawnSync does not give it, so the same line is run again, asynchronously, and compared.
    const child = spawn('/bin/bash', ['-c', script], { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk));
    return new Promise<void>((resolve, reject) => {
      child.on('close', () => {
        try {
          expect((JSON.parse(out) as { pid: number }).pid).toBe(child.pid);
          // The same probe started plainly has not that layout: the check above can fail.
          const plain = JSON.parse(execFileSync(process.execPath, [probe], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })) as { layout: boolean };
          expect(plain.layout).toBe(false);
          resolve();
        } catch (error) {
          reject(error as Error);
        }
      });
    });
  });

  it('is a unit systemd takes: systemd-analyze verify finds nothing (and, with systemd as PID 1, READY=1 starts it)', () => {
    const analyze = ['/usr/bin/systemd-analyze', '/bin/systemd-analyze'].find((candidate) => existsSync(candidate));
    if (analyze) {
      const verify = spawnSync(analyze, ['verify', UNIT], { encoding: 'utf8' });
      expect(verify.stderr + verify.stdout).toBe('');
      expect(verify.status).toBe(0);
    } else {
      // Without systemd's tools, the directives the service relies on, as parsed (the tests above) and nothing unknown in [Service].
      const known = new Set(['Type', 'NotifyAccess', 'ExecStart', 'ExecReload', 'Environment', 'Restart', 'RestartSec', 'StateDirectory', 'KillMode', 'TimeoutStartSec', 'TimeoutStopSec', 'StandardOutput', 'StandardError']);
      expect([...unit.get('Service')!.keys()].filter((key) => !known.has(key))).toEqual([]);
    }
    if (existsSync('/run/systemd/system') && process.getuid?.() === 0) startsUnderSystemd();
  });
});

/**
 * Under systemd as PID 1: a transient service with the unit's Type,
 * NotifyAccess and KillMode and its ExecStart shape, running a probe that
 * sends READY=1 with service/systemd-notify.ts. systemd-run returns once the
 * start job is done, which for Type=notify is READY=1 from the main process.
 */
function startsUnderSystemd(): void {
  const folder = mkdtempSync(path.join(tmpdir(), 'novalet-unit-'));
  folders.push(folder);
  const probe = path.join(folder, 'ready.mjs');
  const notify = pathToFileURL(path.join(TOP, 'dist/service/systemd-notify.js')).href;
  writeFileSync(probe, `const { createNotifier } = await import(${JSON.stringify(notify)});\ncreateNotifier().ready('probe ready');\nsetTimeout(() => undefined, 60_000);\n`);
  const script = execStartScript().replace(INSTALLED_NODE, process.execPath).replace(INSTALLED_MAIN, probe);
  const name = `novalet-notify-test-${process.pid}-${Date.now()}.service`;
  const properties = ['Type', 'NotifyAccess', 'KillMode'].flatMap((key) => ['-p', `${key}=${one('Service', key)}`]);
  try {
    const started = spawnSync('systemd-run', ['--quiet', `--unit=${name}`, ...properties, '-p', 'TimeoutStartSec=30', '/bin/bash', '-c', script], { encoding: 'utf8' });
    expect(started.stderr).toBe('');
    expect(started.status).toBe(0);
    const shown = execFileSync('systemctl', ['show', '--property=ActiveState,StatusText', name], { encoding: 'utf8' });
    expect(shown).toContain('ActiveState=active');
    expect(shown).toContain('StatusText=probe ready');
  } finally {
    spawnSync('systemctl', ['stop', name]);
    spawnSync('systemctl', ['reset-failed', name]);
  }
}
