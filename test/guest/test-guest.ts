import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { READY_MARKER } from '../../hypervisor/virt-type/test-guest.js';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';

/**
 * The small test guest that deploy/build-test-guest.sh builds, and what a test
 * needs to boot it under QEMU (TCG) and read what it prints on its console.
 */

const top = path.resolve(import.meta.dirname, '../..');
export const BUILDER = path.join(top, 'deploy/build-test-guest.sh');
export const INIT_SOURCE = path.join(top, 'deploy/test-guest/init');
/** Where the builder puts the guest by default; NOVALET_TEST_GUEST_DIR overrides it for tests. */
export const TEST_GUEST_DIR = process.env.NOVALET_TEST_GUEST_DIR ?? '/var/lib/novalet/test-guest';

export interface TestGuestManifest {
  kernelPackage: string;
  kernelPackageVersion: string;
  kernelRelease: string;
  builderHash: string;
  kernelCommandLine: string;
  diskKernelCommandLine: string;
  modules: string[];
  files: Record<'vmlinuz' | 'initramfs.cpio.gz' | 'disk.qcow2', { sha256: string; size: number }>;
}

export interface BuildResult {
  status: number | null;
  stderr: string;
  ms: number;
}

/** Runs the builder (idempotent: fast when OUTDIR is already this build). */
export function buildTestGuest(outdir: string = TEST_GUEST_DIR): BuildResult {
  const started = Date.now();
  const run = spawnSync('bash', [BUILDER, outdir], { encoding: 'utf8', timeout: 300_000 });
  return { status: run.status, stderr: run.stderr, ms: Date.now() - started };
}

export function readManifest(outdir: string = TEST_GUEST_DIR): TestGuestManifest {
  return JSON.parse(readFileSync(path.join(outdir, 'manifest.json'), 'utf8')) as TestGuestManifest;
}

/** The guest's console lines. */
export const READY_PREFIX = 'NOVALET-TEST-GUEST-READY';
export const DISK_PREFIX = 'NOVALET-TEST-GUEST-DISK';
export const POWEROFF_LINE = 'NOVALET-TEST-GUEST-POWEROFF';

export interface ReadyMarker {
  name: string;
  cpuModel: string;
  flags: string[];
}

/** Parses `NOVALET-TEST-GUEST-READY name=<name> cpu_model=<model> flags=<f1 f2 ...>`. */
export function parseReadyMarker(line: string): ReadyMarker | undefined {
  const m = READY_MARKER.exec(line.replace(/\r/g, ''));
  if (!m) return undefined;
  return { name: m[1] as string, cpuModel: (m[2] as string).trim(), flags: (m[3] as string).trim().split(/\s+/).filter(Boolean) };
}

export interface QemuExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/**
 * One qemu-system-x86_64 under TCG with its serial console on stdout. Collects
 * the console line by line; kill() ends it for good. Every instance is kept in
 * a registry so that a test's afterEach can end any it left (killAllQemu).
 */
export class QemuRun {
  static readonly live = new Set<QemuRun>();
  readonly child: ChildProcess;
  readonly lines: string[] = [];
  readonly exited: Promise<QemuExit>;
  exit: QemuExit | undefined;
  private partial = '';
  private waiters: Array<() => void> = [];

  constructor(args: string[]) {
    const argv = ['-accel', 'tcg', '-m', '256', '-display', 'none', '-serial', 'stdio', '-monitor', 'none', '-nic', 'none', '-no-reboot', ...args];
    this.child = spawn('qemu-system-x86_64', argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    QemuRun.live.add(this);
    const take = (chunk: Buffer): void => {
      this.partial += chunk.toString('latin1');
      const parts = this.partial.split('\n');
      this.partial = parts.pop() ?? '';
      for (const p of parts) this.lines.push(p.replace(/\r/g, ''));
      this.notify();
    };
    this.child.stdout?.on('data', take);
    this.child.stderr?.on('data', take);
    this.exited = new Promise((resolve) => {
      this.child.on('exit', (code, signal) => {
        this.exit = { code, signal };
        QemuRun.live.delete(this);
        if (this.partial) this.lines.push(this.partial.replace(/\r/g, ''));
        this.partial = '';
        this.notify();
        resolve(this.exit);
      });
    });
  }

  private notify(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  /** The console so far, for failure messages. */
  console(): string {
    return [...this.lines, this.partial].join('\n');
  }

  /** The first console line that matches, waiting for it up to timeoutMs. */
  async waitForLine(pattern: RegExp | string, timeoutMs: number): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    const matches = (l: string): boolean => (typeof pattern === 'string' ? l.includes(pattern) : pattern.test(l));
    for (;;) {
      const found = this.lines.find(matches);
      if (found !== undefined) return found;
      if (this.exit) throw new Error(`QEMU exited (${JSON.stringify(this.exit)}) before printing ${pattern}; console:\n${this.console()}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no ${pattern} on the console within ${timeoutMs} ms; console:\n${this.console()}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** QEMU's own exit, or undefined if it is still running after timeoutMs. */
  async waitForExit(timeoutMs: number): Promise<QemuExit | undefined> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), timeoutMs);
    });
    try {
      return await Promise.race([this.exited, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  async kill(): Promise<void> {
    if (!this.exit) {
      this.child.kill('SIGKILL');
      await this.exited;
    }
  }
}

/** Ends every QEMU a test started; for afterEach. */
export async function killAllQemu(): Promise<void> {
  await Promise.all([...QemuRun.live].map((q) => q.kill()));
}

/** Sends QMP commands over a unix socket (after qmp_capabilities); resolves with their replies. */
export async function qmp(socketPath: string, commands: string[], timeoutMs = 10_000): Promise<unknown[]> {
  return new Promise((resolve, reject) => {
    const sock = net.createConnection(socketPath);
    const replies: unknown[] = [];
    const queue = ['qmp_capabilities', ...commands];
    let buffer = '';
    let greeted = false;
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`QMP on ${socketPath} did not answer within ${timeoutMs} ms`));
    }, timeoutMs);
    const send = (): void => {
      const next = queue.shift();
      if (next === undefined) {
        clearTimeout(timer);
        sock.end();
        resolve(replies);
        return;
      }
      sock.write(`${JSON.stringify({ execute: next })}\n`);
    };
    sock.on('data', (chunk) => {
      buffer += chunk.toString('utf8');
      let nl: number;
      while ((nl = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, nl).trim();
        buffer = buffer.slice(nl + 1);
        if (!line) continue;
        const msg = JSON.parse(line) as Record<string, unknown>;
        if ('QMP' in msg && !greeted) {
          greeted = true;
          send();
        } else if ('return' in msg || 'error' in msg) {
          replies.push(msg);
          if ('error' in msg) {
            clearTimeout(timer);
            sock.destroy();
            reject(new Error(`QMP error: ${line}`));
            return;
          }
          send();
        }
      }
    });
    sock.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}
