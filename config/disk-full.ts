/**
 * A write that failed because its file system is full (ENOSPC) or the
 * writer's quota is spent (EDQUOT), as one error wherever novalet writes:
 * DISK_FULL naming the folder and what to do, never INTERNAL with errno words.
 */
import { NovaletError } from './novalet-error.js';

/** ENOSPC or EDQUOT, or the DISK_FULL error made of one. */
export function isDiskFull(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT' || code === 'DISK_FULL';
}

/** `what` could not be written into `folder`: its file system is full. */
export function diskFull(folder: string, what: string): NovaletError {
  return new NovaletError(
    'DISK_FULL',
    `The file system holding ${folder} is full: ${what} could not be written.`,
    `Free space there (df -h ${folder} shows it), or move [DEFAULT] state_path or instances_path to a larger file system.`,
  );
}

/** `err` as DISK_FULL when it is one, else `err` itself. */
export function asDiskFull(err: unknown, folder: string, what: string): unknown {
  return isDiskFull(err) ? diskFull(folder, what) : err;
}
