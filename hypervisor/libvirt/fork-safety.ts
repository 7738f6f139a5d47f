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
 * libuv's descriptors are fixed when Node starts, so the cure is at start.
 * Where they land depends on what the parent left open (a shell's `3>…`,
 * sudo, systemd, CI runners all differ) and on how Node was built (Debian
 * 13's shared libuv with io_uring takes one more), and a pipe can even be
 * split around a gap. So novalet does not guess: runForkSafe() relaunches the
 * process with descriptors 3 … 12 open on /dev/null, a layout it can check,
 * in which libuv's descriptors lie above every number libvirt's child uses.
 * A process that already has that layout (the relaunched one, or one started
 * so by hand or by a unit) runs as it is.
 */
import { spawn } from 'node:child_process';
import { openSync, readdirSync, readlinkSync } from 'node:fs';
import { Socket } from 'node:net';
import { NovaletError } from '../../config/novalet-error.js';

/** The handshake pipe ends libvirt's intermediate child keeps: 3 and 4. */
const LIBVIRT_HANDSHAKE_FDS = 4;
/** Extra descriptors a relaunch opens at exec (3 … 12): libuv's pipe then sits above anything libvirt's child uses. */
const RESERVED_FDS = 10;

/** How many log files libvirt re-opens in its forked child: the file outputs of LIBVIRT_LOG_OUTPUTS. */
export function libvirtLogFiles(outputs: string | undefined): number {
  return (outputs ?? '').split(/\s+/).filter((output) => /^\d:file:/.test(output)).length;
}

/** The highest descriptor number libvirt's intermediate child uses for itself. */
export function libvirtChildFds(logFiles: number): number {
  return LIBVIRT_HANDSHAKE_FDS + logFiles;
}
/** Set in the relaunched process: it must have the layout, and never relaunches again. */
export const FORK_SAFE_ENV = 'NOVALET_FORK_SAFE_FDS';

/** The descriptors a fork-safe process has open on /dev/null. */
export const RESERVED_FD_RANGE: readonly [number, number] = [3, 2 + RESERVED_FDS];

/**
 * In a relaunched process, the descriptor just above the reserved ones: one
 * end of a socket pair whose other end only the parent holds. It reads
 * end-of-file when the parent is gone, however it ended (SIGKILL included).
 */
export const PARENT_FD = RESERVED_FD_RANGE[1] + 1;

function fdTarget(fd: number): string | null {
  try {
    return readlinkSync(`/proc/self/fd/${fd}`);
  } catch {
    return null;
  }
}

/**
 * The low descriptor pair that looks like libuv's signal lock pipe (two
 * consecutive descriptors on the same pipe) among the numbers libvirt's
 * child uses when it re-opens `logFiles` log files, or null when libvirt can
 * fork QEMU safely from this process.
 */
export function forkHazard(logFiles = libvirtLogFiles(process.env.LIBVIRT_LOG_OUTPUTS)): [number, number] | null {
  const highest = libvirtChildFds(logFiles);
  if (process.platform !== 'linux') return null;
  let fds: number[];
  try {
    fds = readdirSync('/proc/self/fd').map(Number).sort((a, b) => a - b);
  } catch {
    return null;
  }
  for (const fd of fds) {
    if (fd < 3 || fd > highest) continue;
    const target = fdTarget(fd);
    if (target !== null && target.startsWith('pipe:') && fdTarget(fd + 1) === target) return [fd, fd + 1];
  }
  return null;
}

/** True when descriptors 3 … 12 are all open on /dev/null (see the module comment). */
export function hasForkSafeLayout(): boolean {
  if (process.platform !== 'linux') return true;
  for (let fd = RESERVED_FD_RANGE[0]; fd <= RESERVED_FD_RANGE[1]; fd++) {
    if (fdTarget(fd) !== '/dev/null') return false;
  }
  return true;
}

/**
 * Throws when QEMU cannot be started from this process (see the module
 * comment). A process novalet did not start itself (a test worker, a program
 * using the library) is judged by where libuv's pipe is found.
 */
export function assertForkSafe(action: string): void {
  if (hasForkSafeLayout()) return;
  const hazard = forkHazard();
  if (hazard === null) return;
  throw new NovaletError(
    'LIBVIRT_FORK_HAZARD',
    `libvirt's embedded driver cannot ${action} in this process: Node's libuv holds descriptors ${hazard[0]} and ${hazard[1]} and closes them in every forked child, where libvirt's pipes to QEMU's launcher (and the log files it re-opens there) live, so QEMU would fail with "Unable to notify child process: Bad file descriptor".`,
    `Start the process with descriptors ${RESERVED_FD_RANGE[0]} to ${RESERVED_FD_RANGE[1]} open on /dev/null: call runForkSafe() first thing in the command (it relaunches the process so), or from a shell run node … ${Array.from({ length: RESERVED_FDS }, (_, i) => `${i + RESERVED_FD_RANGE[0]}</dev/null`).join(' ')}.`,
  );
}

/**
 * Relaunches this process with descriptors 3 … 12 open on /dev/null unless
 * it has that layout already, and resolves with the relaunched process's exit
 * code (the caller exits with it); resolves null when this process is the
 * one to go on. Signals (SIGINT, SIGTERM, SIGHUP) are passed on to the
 * relaunched process, which cleans up and exits; this one then exits with its
 * status.
 */
export async function runForkSafe(): Promise<number | null> {
  if (hasForkSafeLayout()) {
    if (process.env[FORK_SAFE_ENV] === '1') endWithParent();
    return null;
  }
  if (process.env[FORK_SAFE_ENV] === '1') {
    throw new NovaletError(
      'LIBVIRT_FORK_HAZARD',
      `novalet was relaunched with descriptors ${RESERVED_FD_RANGE[0]} to ${RESERVED_FD_RANGE[1]} on /dev/null but does not have them, so libvirt could not start QEMU from it safely.`,
      `Do not set ${FORK_SAFE_ENV} yourself; if a wrapper closes descriptors, start novalet with ${RESERVED_FD_RANGE[0]}…${RESERVED_FD_RANGE[1]} open on /dev/null.`,
    );
  }
  const devNull = openSync('/dev/null', 'r');
  const child = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
    // 3 … 12 on /dev/null, then PARENT_FD: a socket pair with this process (see endWithParent).
    stdio: ['inherit', 'inherit', 'inherit', ...Array.from({ length: RESERVED_FDS }, () => devNull), 'pipe'],
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

/**
 * A relaunched process never outlives the process that relaunched it: when
 * PARENT_FD reads end-of-file (the parent is gone, even killed with SIGKILL,
 * which it cannot pass on), this process sends itself SIGTERM and so ends
 * as on any stop, cleaning up what it started (cli/command-lifetime.ts).
 *
 * Why a pipe rather than prctl(PR_SET_PDEATHSIG): the end-of-file comes
 * whenever the parent went, even before this process started listening
 * (PDEATHSIG would need a getppid() check for that race); it needs no native
 * call at start-up; and it does not hang on which thread forked the child
 * (PDEATHSIG fires when that thread, not the process, ends). The descriptor
 * is unref'd: it never keeps this process alive.
 */
function endWithParent(): void {
  let parent: Socket;
  try {
    parent = new Socket({ fd: PARENT_FD, readable: true, writable: false });
  } catch {
    // Started by hand with the variable set but no such descriptor: there is no parent to follow.
    return;
  }
  let gone = false;
  const ended = (): void => {
    if (gone) return;
    gone = true;
    parent.destroy();
    process.kill(process.pid, 'SIGTERM');
  };
  parent.on('end', ended);
  parent.on('close', ended);
  parent.on('error', ended);
  parent.resume();
  parent.unref();
}

function signalNumber(signal: NodeJS.Signals): number | null {
  const numbers: Partial<Record<NodeJS.Signals, number>> = { SIGHUP: 1, SIGINT: 2, SIGKILL: 9, SIGTERM: 15 };
  return numbers[signal] ?? null;
}
