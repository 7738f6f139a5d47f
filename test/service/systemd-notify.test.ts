/**
 * service/systemd-notify.ts speaking the sd_notify protocol through
 * libsystemd, to a socket of the test's own: this machine's PID 1 need not
 * be systemd, so Debian's Python binds an AF_UNIX datagram socket
 * (test/support/notify-receiver.py) and reports each datagram with the pid
 * the kernel gives for its sender, which is what systemd's NotifyAccess=main
 * judges by. The notifier runs in a node process of its own, started with
 * NOTIFY_SOCKET (a path, or an abstract @name) as systemd would.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { createNotifier, MAX_STATUS_LENGTH, statusLine, watchdogUsec } from '../../service/systemd-notify.js';

const TOP = path.resolve(import.meta.dirname, '../..');
const MODULE = pathToFileURL(path.join(TOP, 'dist/service/systemd-notify.js')).href;
const RECEIVER = path.join(TOP, 'test/support/notify-receiver.py');

/** The node side: what a service does with its notifier, then what it had loaded. */
const PROBE = `
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
const { createNotifier } = await import(process.argv[2]);
const plan = JSON.parse(process.argv[3]);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const require = createRequire(import.meta.url);
const loaded = () => ({
  koffi: Object.keys(require.cache).some((file) => file.includes('/node_modules/koffi/')),
  libsystemd: readFileSync('/proc/self/maps', 'utf8').includes('libsystemd.so'),
});
const notifier = createNotifier(process.env, plan.library ? { library: plan.library } : {});
notifier.ready('ready: 3 instances\\nline two\\u0007');
notifier.status('consuming compute.host-a');
const stop = notifier.startWatchdog();
await sleep(plan.watchdogMs);
stop();
notifier.status('watchdog stopped');
await sleep(plan.afterStopMs);
notifier.stopping('stopping: finishing 1 build');
console.log(JSON.stringify({ enabled: notifier.enabled, reason: notifier.reason, pid: process.pid, loaded: loaded() }));
`;

const children = new Set<ChildProcess>();
const folders: string[] = [];
afterEach(() => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  children.clear();
  for (const folder of folders.splice(0)) rmSync(folder, { recursive: true, force: true });
});

function folder(): string {
  const made = mkdtempSync(path.join(tmpdir(), 'novalet-notify-'));
  folders.push(made);
  return made;
}

interface Datagram {
  data: string;
  pid: number | null;
}

/** The Python receiver on `address`, once bound; `datagrams` fills as they arrive. */
async function receiver(address: string): Promise<{ datagrams: Datagram[]; stop: () => Promise<void> }> {
  const child = spawn('/usr/bin/python3', [RECEIVER, address, '30'], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  const datagrams: Datagram[] = [];
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk));
  await new Promise<void>((resolve, reject) => {
    let buffered = '';
    child.stdout.on('data', (chunk: Buffer) => {
      buffered += chunk;
      let newline: number;
      while ((newline = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        if (line === 'bound') resolve();
        else datagrams.push(JSON.parse(line) as Datagram);
      }
    });
    child.on('exit', (code) => reject(new Error(`the receiver exited ${code}: ${stderr}`)));
  });
  return {
    datagrams,
    stop: async () => {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    },
  };
}

interface ProbeResult {
  pid: number;
  status: number | null;
  stderr: string;
  report: { enabled: boolean; reason: string | null; pid: number; loaded: { koffi: boolean; libsystemd: boolean } };
}

/**
 * Runs the probe in a node process of its own. WATCHDOG_PID is set as
 * systemd sets it, to the service's own pid: bash exports its $$ and execs
 * node, which keeps that pid.
 */
async function probe(env: NodeJS.ProcessEnv, plan: { watchdogMs: number; afterStopMs: number; library?: string }, watchdogPid: 'self' | string | null): Promise<ProbeResult> {
  const dir = folder();
  const script = path.join(dir, 'probe.mjs');
  writeFileSync(script, PROBE);
  const { NOTIFY_SOCKET: _n, WATCHDOG_USEC: _u, WATCHDOG_PID: _p, ...inherited } = process.env;
  const fullEnv = { ...inherited, ...env, ...(watchdogPid !== null && watchdogPid !== 'self' ? { WATCHDOG_PID: watchdogPid } : {}) };
  const argv = [script, MODULE, JSON.stringify(plan)];
  const child =
    watchdogPid === 'self'
      ? spawn('/bin/bash', ['-c', 'export WATCHDOG_PID=$$; exec "$0" "$@"', process.execPath, ...argv], { env: fullEnv, stdio: ['ignore', 'pipe', 'pipe'] })
      : spawn(process.execPath, argv, { env: fullEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk));
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk));
  // 'close': exited, and its output read to the end.
  const status = await new Promise<number | null>((resolve) => child.on('close', resolve));
  expect(stderr).toBe('');
  return { pid: child.pid!, status, stderr, report: JSON.parse(stdout) as ProbeResult['report'] };
}

/** Waits until the datagram `last` has arrived (datagrams are sent before the probe exits, read a moment later). */
async function until(datagrams: Datagram[], last: string): Promise<void> {
  for (let i = 0; i < 200 && !datagrams.some((d) => d.data === last); i++) await new Promise((resolve) => setTimeout(resolve, 10));
}

const STOPPING = 'STOPPING=1\nSTATUS=stopping: finishing 1 build';

describe('sd_notify through libsystemd, to a socket of our own', () => {
  for (const kind of ['path', 'abstract'] as const) {
    it(`sends READY=1 with STATUS, STATUS, WATCHDOG=1 every WATCHDOG_USEC/2 until stopped, and STOPPING=1, from the service's pid (${kind} socket)`, async () => {
      const address = kind === 'path' ? path.join(folder(), 'notify.sock') : `@novalet-test-${process.pid}-${Date.now()}`;
      const socket = await receiver(address);
      const result = await probe({ NOTIFY_SOCKET: address, WATCHDOG_USEC: '200000' }, { watchdogMs: 450, afterStopMs: 350 }, 'self');
      await until(socket.datagrams, STOPPING);
      await socket.stop();
      expect(result.status).toBe(0);
      expect(result.report).toEqual({ enabled: true, reason: null, pid: result.pid, loaded: { koffi: true, libsystemd: true } });
      const texts = socket.datagrams.map((d) => d.data);
      // One line of STATUS: the line feed and the bell became spaces.
      expect(texts[0]).toBe('READY=1\nSTATUS=ready: 3 instances line two');
      expect(texts[1]).toBe('STATUS=consuming compute.host-a');
      const stoppedAt = texts.indexOf('STATUS=watchdog stopped');
      const pings = texts.slice(2, stoppedAt);
      // 450 ms at one ping per 100 ms, the first at once; a loaded machine may delay some, never add any.
      expect(pings.length).toBeGreaterThanOrEqual(2);
      expect(pings.length).toBeLessThanOrEqual(6);
      expect(new Set(pings)).toEqual(new Set(['WATCHDOG=1']));
      // After stop(), 350 ms of silence: no ping between it and STOPPING.
      expect(texts.slice(stoppedAt + 1)).toEqual([STOPPING]);
      // Sent by the service's own process, as NotifyAccess=main requires.
      expect(new Set(socket.datagrams.map((d) => d.pid))).toEqual(new Set([result.pid]));
    });
  }

  it('sends no WATCHDOG=1 when WATCHDOG_PID names another process, or WATCHDOG_USEC is not set', async () => {
    const address = path.join(folder(), 'notify.sock');
    const socket = await receiver(address);
    await probe({ NOTIFY_SOCKET: address, WATCHDOG_USEC: '200000' }, { watchdogMs: 300, afterStopMs: 0 }, '1');
    await until(socket.datagrams, STOPPING);
    const first = socket.datagrams.splice(0).map((d) => d.data);
    await probe({ NOTIFY_SOCKET: address }, { watchdogMs: 300, afterStopMs: 0 }, 'self');
    await until(socket.datagrams, STOPPING);
    const second = socket.datagrams.map((d) => d.data);
    await socket.stop();
    for (const texts of [first, second]) {
      expect(texts).toEqual(['READY=1\nSTATUS=ready: 3 instances line two', 'STATUS=consuming compute.host-a', 'STATUS=watchdog stopped', STOPPING]);
    }
  });

  it('without NOTIFY_SOCKET does nothing and loads neither koffi nor libsystemd', async () => {
    const result = await probe({}, { watchdogMs: 50, afterStopMs: 0 }, 'self');
    expect(result.status).toBe(0);
    expect(result.report.enabled).toBe(false);
    expect(result.report.reason).toContain('NOTIFY_SOCKET is not set');
    expect(result.report.loaded).toEqual({ koffi: false, libsystemd: false });
  });

  it('when libsystemd cannot be loaded, says why and goes on without notifying', async () => {
    const address = path.join(folder(), 'notify.sock');
    const socket = await receiver(address);
    const result = await probe({ NOTIFY_SOCKET: address, WATCHDOG_USEC: '200000' }, { watchdogMs: 250, afterStopMs: 0, library: 'libnovalet-no-such-library.so.0' }, 'self');
    // Anything sent would be there by now: the probe ran for 250 ms after ready().
    await new Promise((resolve) => setTimeout(resolve, 100));
    await socket.stop();
    expect(result.status).toBe(0);
    expect(result.report.enabled).toBe(false);
    expect(result.report.reason).toContain('libnovalet-no-such-library.so.0 cannot be loaded');
    expect(result.report.reason).toContain('Install libsystemd0');
    expect(socket.datagrams).toEqual([]);
  });

  it('does not notify for an environment whose NOTIFY_SOCKET is not the process\'s (libsystemd reads the process\'s)', () => {
    expect(process.env.NOTIFY_SOCKET).toBeUndefined();
    const notifier = createNotifier({ NOTIFY_SOCKET: '/run/systemd/notify' });
    expect(notifier.enabled).toBe(false);
    expect(notifier.reason).toContain("not the process's");
    expect(() => {
      notifier.ready('x');
      notifier.startWatchdog()();
    }).not.toThrow();
  });
});

describe('what the notifier sends', () => {
  it('makes STATUS one line of printable text, cut when long', () => {
    expect(statusLine('building web-1\nREADY=1')).toBe('building web-1 READY=1');
    expect(statusLine('\ttab\r\n\u001b[31mred\u0085\u2028end  ')).toBe('tab [31mred end');
    const long = statusLine('x'.repeat(1000));
    expect(Array.from(long)).toHaveLength(MAX_STATUS_LENGTH);
    expect(long.endsWith('…')).toBe(true);
  });

  it('pings the watchdog only for a positive WATCHDOG_USEC meant for this pid', () => {
    expect(watchdogUsec({ WATCHDOG_USEC: '200000' }, 42)).toBe(200000);
    expect(watchdogUsec({ WATCHDOG_USEC: '200000', WATCHDOG_PID: '42' }, 42)).toBe(200000);
    expect(watchdogUsec({ WATCHDOG_USEC: '200000', WATCHDOG_PID: '43' }, 42)).toBeNull();
    for (const usec of [undefined, '', '0', '-5', '1e6', 'abc']) expect(watchdogUsec({ WATCHDOG_USEC: usec }, 42), String(usec)).toBeNull();
  });
});
