/**
 * A hazard between libuv and libvirt's embedded driver, and the way around it.
 *
 * libuv (inside Node) registers a pthread_atfork child handler that closes
 * the two file descriptors of its signal lock pipe and makes a new pipe
 * (uv__signal_global_reinit). It runs in every child forked by any library in
 * the process, before exec. libvirt starts QEMU with a double fork: the
 * intermediate child closes every descriptor it does not pass on, then opens
 * the pipes it talks to its parent through — at the lowest free numbers, 3
 * and 4. In the grandchild, libuv's handler closes "its" descriptors again,
 * by the numbers they had in Node. When Node gave libuv's pipe 4 and 5 — as it
 * does in a process started with only stdin, stdout and stderr open — the
 * handler closes libvirt's pipe, and QEMU never starts: the domain log says
 * "Unable to notify child process: Bad file descriptor" and libvirt reports
 * the child's "unexpected exit status 1".
 *
 * libuv's descriptors are fixed when Node starts, so the cure is at start:
 * one or more extra descriptors open at exec push libuv's pipe above 4.
 * runForkSafe() relaunches the process that way when needed; a service
 * started by systemd can equally be given them by its unit.
 */
import { spawn } from 'node:child_process';
import { openSync, readdirSync, readlinkSync } from 'node:fs';
import { NovaletError } from '../../config/novalet-error.js';

/** The highest descriptor number libvirt's intermediate child opens for itself (its pipe to the parent: 3 and 4). */
const LIBVIRT_CHILD_FDS = 4;
/** Extra descriptors a relaunch opens at exec (3 … 3+n-1): libuv's pipe then starts well above libvirt's. */
const RESERVED_FDS = 6;
/** Set in the relaunched process, so that it never relaunches again. */
export const FORK_SAFE_ENV = 'NOVALET_FORK_SAFE_FDS';

function fdTarget(fd: number): string | null {
  try {
    return readlinkSync(`/proc/self/fd/${fd}`);
  } catch {
    return null;
  }
}

/**
 * The low descriptor pair that looks like libuv's signal lock pipe (two
 * consecutive descriptors on the same pipe, at 4 or below), or null when
 * libvirt can fork QEMU safely from this process.
 */
export function forkHazard(): [number, number] | null {
  if (process.platform !== 'linux') return null;
  let fds: number[];
  try {
    fds = readdirSync('/proc/self/fd').map(Number).sort((a, b) => a - b);
  } catch {
    return null;
  }
  for (const fd of fds) {
    if (fd < 3 || fd > LIBVIRT_CHILD_FDS) continue;
    const target = fdTarget(fd);
    if (target !== null && target.startsWith('pipe:') && fdTarget(fd + 1) === target) return [fd, fd + 1];
  }
  return null;
}

/** Throws when QEMU cannot be started from this process (see the module comment). */
export function assertForkSafe(action: string): void {
  const hazard = forkHazard();
  if (hazard === null) return;
  throw new NovaletError(
    'LIBVIRT_FORK_HAZARD',
    `libvirt's embedded driver cannot ${action} in this process: Node's libuv holds descriptors ${hazard[0]} and ${hazard[1]} and closes them in every forked child, where libvirt's pipe to QEMU's launcher lives, so QEMU would fail with "Unable to notify child process: Bad file descriptor".`,
    "Start the process with descriptors 3 and 4 open: call runForkSafe() first thing in the command (it relaunches the process so), or from a shell run node … 3</dev/null 4</dev/null.",
  );
}

/**
 * Relaunches this process with extra descriptors open when libvirt could not
 * fork QEMU from it, and resolves with the relaunched process's exit code
 * (the caller exits with it); resolves null when this process is fine as it is.
 * Signals (SIGINT, SIGTERM, SIGHUP) are passed on to the relaunched process.
 */
export async function runForkSafe(): Promise<number | null> {
  if (process.env[FORK_SAFE_ENV] === '1' || forkHazard() === null) return null;
  const devNull = openSync('/dev/null', 'r');
  const child = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
    stdio: ['inherit', 'inherit', 'inherit', ...Array.from({ length: RESERVED_FDS }, () => devNull)],
    env: { ...process.env, [FORK_SAFE_ENV]: '1' },
  });
  const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
  const forward = (signal: NodeJS.Signals) => child.kill(signal);
  for (const signal of signals) process.on(signal, forward);
  try {
    return await new Promise<number>((resolve, reject) => {
      child.on('error', reject);
      child.on('exit', (code, signal) => resolve(code ?? (signal === null ? 1 : 128 + (signalNumber(signal) ?? 0))));
    });
  } finally {
    for (const signal of signals) process.off(signal, forward);
  }
}

function signalNumber(signal: NodeJS.Signals): number | null {
  const numbers: Partial<Record<NodeJS.Signals, number>> = { SIGHUP: 1, SIGINT: 2, SIGKILL: 9, SIGTERM: 15 };
  return numbers[signal] ?? null;
}
