/**
 * Which process holds an embedded libvirt root, asked without taking it.
 *
 * libvirt's embedded QEMU driver locks DIR/run/qemu/driver.pid with a POSIX
 * record lock (fcntl F_SETLK, a write lock on its first byte) for as long as
 * the process lives. fcntl(F_GETLK) with the same lock request answers
 * whether it could be taken and, if not, the holder's pid.
 *
 * Only ask about roots this process does not embed itself: F_GETLK reports a
 * process's own locks as free, and closing any descriptor of a file drops
 * every POSIX lock the process holds on it — probing our own root would
 * silently release libvirt's lock. embedded-driver-state.ts knows which root
 * that is.
 */
import { closeSync, constants, mkdirSync, openSync } from 'node:fs';
import path from 'node:path';
import { koffi } from './koffi.js';
import { NovaletError } from '../../config/novalet-error.js';

// Linux, x86_64 and aarch64 alike.
const F_GETLK = 5;
const F_SETLK = 6;
const F_WRLCK = 1;
const F_UNLCK = 2;
/** struct flock: short l_type, short l_whence, off_t l_start, off_t l_len, pid_t l_pid (LP64 layout). */
const FLOCK_SIZE = 32;
const L_START = 8;
const L_LEN = 16;
const L_PID = 24;

type Fcntl = (fd: number, cmd: number, type: string, lock: Buffer) => number;
let fcntl: Fcntl | null = null;

function libcFcntl(): Fcntl {
  fcntl ??= koffi.load('libc.so.6').func('int fcntl(int fd, int cmd, ...)') as Fcntl;
  return fcntl;
}

/** A write lock request on the first byte of a file, as libvirt makes it. */
function firstByteWriteLock(): Buffer {
  const lock = Buffer.alloc(FLOCK_SIZE);
  lock.writeInt16LE(F_WRLCK, 0);
  lock.writeInt16LE(0, 2); // SEEK_SET
  lock.writeBigInt64LE(0n, L_START);
  lock.writeBigInt64LE(1n, L_LEN);
  return lock;
}

export function driverPidFile(root: string): string {
  return path.join(root, 'run/qemu/driver.pid');
}

/** The pid of the process holding the embedded root `root`, or null when none does (or it was never used). */
export function embeddedRootHolder(root: string): number | null {
  let fd: number;
  try {
    fd = openSync(driverPidFile(root), 'r');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
  try {
    const lock = firstByteWriteLock();
    if (libcFcntl()(fd, F_GETLK, 'void *', lock) < 0) {
      throw new NovaletError(
        'EMBEDDED_ROOT_LOCK_UNREADABLE',
        `novalet could not ask who holds ${driverPidFile(root)} (fcntl F_GETLK failed, errno ${koffi.errno()}).`,
        'Check that the embedded root is on a local file system that supports POSIX locks.',
      );
    }
    return lock.readInt16LE(0) === F_UNLCK ? null : lock.readInt32LE(L_PID);
  } finally {
    closeSync(fd);
  }
}

/** Descriptors of the claim files this process holds, kept open (and so locked) until it exits. */
const claims = new Map<string, number>();

/**
 * Claims `file` for this process with a POSIX write lock that lasts until the
 * process exits (the lock goes with the process, so a crash frees it). False
 * when another process holds the claim. Processes picking among shared roots
 * claim one before asking libvirt for it, so that two of them starting at the
 * same moment never reach for the same root.
 */
export function claimForProcess(file: string): boolean {
  if (claims.has(file)) return true;
  mkdirSync(path.dirname(file), { recursive: true });
  const fd = openSync(file, constants.O_RDWR | constants.O_CREAT, 0o644);
  if (libcFcntl()(fd, F_SETLK, 'void *', firstByteWriteLock()) < 0) {
    closeSync(fd);
    return false;
  }
  claims.set(file, fd);
  return true;
}

/** Gives back a claim taken by claimForProcess. */
export function releaseClaim(file: string): void {
  const fd = claims.get(file);
  if (fd === undefined) return;
  claims.delete(file);
  closeSync(fd);
}
