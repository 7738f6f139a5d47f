/**
 * Signals and clean-up (cli/command-lifetime.ts, instance/leftovers.ts), for
 * real: `novalet run` and `validate --self-test` started as a person starts
 * them, then ended by SIGINT (as a terminal sends it: to the whole process
 * group), SIGTERM (as systemd or kill sends it: to the process) or SIGHUP (a
 * closed terminal) in each phase. Nothing may be left — no QEMU, no domain,
 * no folder — and the next run starts clean. A run killed with SIGKILL
 * cannot clean up; the next command sweeps what it left.
 */
import { execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { constants } from 'node:os';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../config/load-config.js';
import { probeHost } from '../../hypervisor/host/probe.js';
import { selfTestNotNeeded } from '../../hypervisor/virt-type/decision.js';
import { buildTestGuest } from '../guest/test-guest.js';
import { definedDomains, guest, kernelArgs, leftovers, qemuFor, stateWith } from '../support/run-command-state.js';
import { runNovalet, startNovalet, stopLeftoverCommands } from '../support/run-novalet.js';

beforeAll(() => {
  buildTestGuest();
});

interface Started {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  /** Resolves when stdout or stderr shows `text`. */
  shows: (text: string) => Promise<void>;
  exit: Promise<number | null>;
}

/** Starts `novalet` as a plain process leading a process group of its own (as a shell's job), stopped by test/support/run-novalet.ts should the test end first. */
function start(args: string[]): Started {
  const child = startNovalet(args);
  let stdout = '';
  let stderr = '';
  const waiting: { text: string; resolve: () => void }[] = [];
  const check = () => {
    for (const wait of waiting.splice(0)) {
      if (stdout.includes(wait.text) || stderr.includes(wait.text)) wait.resolve();
      else waiting.push(wait);
    }
  };
  child.stdout!.on('data', (d: Buffer) => {
    stdout += d.toString();
    check();
  });
  child.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
    check();
  });
  const exit = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  return {
    child,
    stdout: () => stdout,
    stderr: () => stderr,
    shows: (text) =>
      new Promise<void>((resolve, reject) => {
        waiting.push({ text, resolve });
        check();
        void exit.then(() => reject(new Error(`novalet ended before showing '${text}': ${stderr}`)));
      }),
    exit,
  };
}

/** SIGINT as a terminal sends it (the whole group); the others to the process, as systemd and kill do. */
function send(started: Started, signal: NodeJS.Signals): void {
  if (signal === 'SIGINT') process.kill(-started.child.pid!, signal);
  else started.child.kill(signal);
}

function expectNothingLeft(state: string): void {
  expect(qemuFor(state), 'no QEMU process').toEqual([]);
  expect(leftovers(state), 'no instance or self-test folder').toEqual([]);
  expect(definedDomains(state), 'no domain defined').toEqual([]);
}

const exitFor = (signal: NodeJS.Signals) => 128 + constants.signals[signal];

describe('novalet run ended by a signal', () => {
  it.each(['SIGINT', 'SIGTERM', 'SIGHUP'] as const)('%s while the guest runs: the guest, its domain and its folder go, exit 128+N, and the next run starts clean', async (signal) => {
    const { conf, state } = stateWith('[libvirt]\nvirt_type = qemu');
    const run = start(['run', '--config-file', conf, ...kernelArgs('signalled')]);
    await run.shows('NOVALET-TEST-GUEST-READY');
    send(run, signal);
    expect(await run.exit).toBe(exitFor(signal));
    expect(run.stderr()).toContain(`novalet run: interrupted by ${signal}; the instance is removed.`);
    expectNothingLeft(state);
    const again = await runNovalet(['run', '--config-file', conf, ...kernelArgs('again'), '--wait-for', 'NOVALET-TEST-GUEST-READY', '--timeout', '90']);
    expect(again.status).toBe(0);
    expect(again.stderr).not.toContain('removed what a killed');
    expectNothingLeft(state);
  });

  it('SIGKILL cannot be cleaned up after; the next command removes the orphaned guest, its domain and its folder', async () => {
    const { conf, state } = stateWith('[libvirt]\nvirt_type = qemu');
    const run = start(['run', '--config-file', conf, ...kernelArgs('killed')]);
    await run.shows('NOVALET-TEST-GUEST-READY');
    process.kill(-run.child.pid!, 'SIGKILL');
    await run.exit;
    try {
      expect(qemuFor(state).length, 'QEMU outlives a killed run').toBeGreaterThan(0);
      const next = await runNovalet(['run', '--config-file', conf, ...kernelArgs('next'), '--wait-for', 'NOVALET-TEST-GUEST-READY', '--timeout', '90']);
      expect(next.status).toBe(0);
      expect(next.stderr).toMatch(/novalet run: removed what a killed novalet command left: novalet-[0-9a-f-]{36}/);
      expectNothingLeft(state);
    } finally {
      // Should the sweep fail, the orphan must still not outlive the test.
      for (const pid of qemuFor(state)) process.kill(Number(pid), 'SIGKILL');
    }
  });
});

/** libvirt's remembered-owner attributes on the files under `dir`. */
function libvirtXattrs(dir: string): string[] {
  const script = 'import os,sys\nfor top,_,files in os.walk(sys.argv[1]):\n  for f in files:\n    p=os.path.join(top,f)\n    for x in os.listxattr(p):\n      print(p, x)';
  return execFileSync('/usr/bin/python3', ['-c', script, dir], { encoding: 'utf8' })
    .split('\n')
    .filter((line) => line.includes('trusted.libvirt.security'));
}

describe('a download ended by a signal', () => {
  it.each(['SIGINT', 'SIGTERM', 'SIGHUP'] as const)('%s while the image downloads: the partial image goes, exit 128+N', async (signal) => {
    // glance's [import_filtering_opts] let this loopback image server in.
    const { conf, state } = stateWith(['[libvirt]', 'virt_type = qemu', '[import_filtering_opts]', 'allowed_hosts = 127.0.0.1', 'allowed_ports ='].join('\n'));
    let firstByte: () => void = () => undefined;
    const sending = new Promise<void>((resolve) => (firstByte = resolve));
    // A byte every 100 ms, for ever: only the signal ends this download.
    const server = createServer((_request, response) => {
      response.writeHead(200, { 'content-type': 'application/octet-stream' });
      const timer = setInterval(() => {
        response.write('x');
        firstByte();
      }, 100);
      response.on('close', () => clearInterval(timer));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/image.qcow2`;
      const run = start(['run', '--config-file', conf, '--image', url, '--checksum', `sha256:${'0'.repeat(64)}`]);
      await sending;
      send(run, signal);
      expect(await run.exit).toBe(exitFor(signal));
      expect(run.stderr()).toContain(`novalet run: interrupted by ${signal}; nothing it had started is left.`);
      const base = path.join(state, 'instances/_base');
      expect(existsSync(base) ? readdirSync(base) : [], 'no partial image').toEqual([]);
      expectNothingLeft(state);
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

/** The pids of `pid`'s children. */
function childrenOf(pid: number): number[] {
  try {
    return execFileSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' }).trim().split('\n').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('the process an operator started, killed with SIGKILL', () => {
  it('its relaunched child does not outlive it: it ends as on SIGTERM, removing its guest, domain and folder', async () => {
    const { conf, state } = stateWith('[libvirt]\nvirt_type = qemu');
    // Started plainly (descriptors 0–2 only), `run` relaunches itself (fork-safety.ts): the child does the work.
    const run = start(['run', '--config-file', conf, ...kernelArgs('orphan')]);
    await run.shows('NOVALET-TEST-GUEST-READY');
    const parent = run.child.pid!;
    const [child] = childrenOf(parent);
    expect(child, 'the relaunched child').toBeDefined();
    expect(qemuFor(state).length, 'its guest runs').toBe(1);
    try {
      // Only the parent: SIGKILL cannot be passed on, and the child is not signalled by anyone.
      process.kill(parent, 'SIGKILL');
      const deadline = Date.now() + 60_000;
      while (alive(child!) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
      expect(alive(child!), 'the relaunched child ended').toBe(false);
      await run.exit;
      expect(run.stderr()).toContain('novalet run: interrupted by SIGTERM; the instance is removed.');
      expectNothingLeft(state);
    } finally {
      if (alive(child!)) process.kill(child!, 'SIGKILL');
      for (const pid of qemuFor(state)) process.kill(Number(pid), 'SIGKILL');
    }
  });
});

describe('what a killed run could leave on files', () => {
  it('libvirt keeps no owner attributes on instance files (QEMU runs as root), so a run killed mid-way leaves none to warn about', async () => {
    const { conf, state } = stateWith('[libvirt]\nvirt_type = qemu');
    const run = start(['run', '--config-file', conf, '--image', guest.disk]);
    await run.shows('NOVALET-TEST-GUEST-READY');
    const attributes = libvirtXattrs(state);
    run.child.kill('SIGTERM');
    expect(await run.exit).toBe(exitFor('SIGTERM'));
    expect(attributes).toEqual([]);
    expectNothingLeft(state);
  });
});

describe('the tests themselves', () => {
  it('a command its test leaves running is stopped when the test ends, and cleans up as for any SIGTERM', async () => {
    const { conf, state } = stateWith('[libvirt]\nvirt_type = qemu');
    const run = start(['run', '--config-file', conf, ...kernelArgs('forgotten')]);
    await run.shows('NOVALET-TEST-GUEST-READY');
    await stopLeftoverCommands();
    expect(await run.exit).toBe(exitFor('SIGTERM'));
    expectNothingLeft(state);
  });
});

describe('a run killed in another slot of the pool', () => {
  it('the next command stops its orphaned QEMU even when it takes another slot', async () => {
    const { conf, state } = stateWith('[libvirt]\nvirt_type = qemu');
    const first = start(['run', '--config-file', conf, ...kernelArgs('first')]);
    await first.shows('NOVALET-TEST-GUEST-READY');
    const second = start(['run', '--config-file', conf, ...kernelArgs('second')]);
    try {
      await second.shows('NOVALET-TEST-GUEST-READY');
      // The second run holds slot-1: killed, its QEMU runs on there, unowned.
      process.kill(-second.child.pid!, 'SIGKILL');
      await second.exit;
      first.child.kill('SIGTERM');
      expect(await first.exit).toBe(exitFor('SIGTERM'));
      expect(qemuFor(state).length, 'the killed run\'s QEMU outlives it').toBe(1);
      // validate takes slot-0, free again, and passes over slot-1.
      await runNovalet(['validate', '--config-file', conf]);
      expect(qemuFor(state)).toEqual([]);
    } finally {
      for (const pid of qemuFor(state)) process.kill(Number(pid), 'SIGKILL');
    }
  });
});

describe('the KVM self-test ended by a signal', () => {
  it.each([
    ['validate --self-test', 'SIGTERM'],
    ['run', 'SIGHUP'],
  ] as const)('%s, %s during the self-test: its guest and folder go and nothing is recorded', async (command, signal) => {
    const { conf, state } = stateWith();
    const applies = selfTestNotNeeded(loadConfig({ configFiles: [conf] }).values.libvirt, await probeHost()) === null;
    const args = command === 'run' ? ['run', '--config-file', conf, ...kernelArgs('selftest'), '--timeout', '60'] : ['validate', '--self-test', '--config-file', conf];
    if (!applies) {
      // No self-test applies on this host (the probe settles KVM): there is no such phase to end.
      const validate = await runNovalet(['validate', '--self-test', '--config-file', conf]);
      expect(validate.stderr + validate.stdout).not.toContain('checking that KVM really runs guests');
      expectNothingLeft(state);
      return;
    }
    const started = start(args);
    await started.shows('checking that KVM really runs guests');
    send(started, signal);
    const status = await started.exit;
    // Where KVM works the guest may be up within the second the signal takes; then the test simply ended first.
    if (status === exitFor(signal)) {
      expect(started.stderr()).toMatch(new RegExp(`interrupted by ${signal}; (the self-test's guest is removed|nothing it had started is left)\\.`));
      expect(existsSync(path.join(state, 'kvm-self-test.json')), 'an interrupted self-test is not this boot\'s result').toBe(false);
    } else {
      expect(started.stderr()).toMatch(/self-test|KVM/);
    }
    expectNothingLeft(state);
  });
});
