/**
 * Files that survive a crash whole: written to a temporary file in the same
 * folder, fsynced, renamed over the target, and the folder fsynced, so that
 * after a power cut the old content or the new one is there, never half of
 * one, and the rename itself is on disk. A failed write leaves no temporary
 * file behind; a full file system is DISK_FULL naming the folder.
 */
import { mkdir, open, readdir, rename, unlink } from 'node:fs/promises';
import path from 'node:path';
import { asDiskFull } from '../config/disk-full.js';

const TMP_SUFFIX = '.tmp';
let counter = 0;

/** Makes `dir` if needed. */
export async function ensureFolder(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
}

async function syncFolder(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Writes `text` to `dir/name` atomically and durably (mode 0600). `what` names it in a DISK_FULL error. */
export async function writeFileDurably(dir: string, name: string, text: string, what: string): Promise<void> {
  const target = path.join(dir, name);
  const tmp = `${target}.${process.pid}.${++counter}${TMP_SUFFIX}`;
  try {
    const handle = await open(tmp, 'w', 0o600);
    try {
      await handle.writeFile(text);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(tmp, target);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw asDiskFull(err, dir, what);
  }
  await syncFolder(dir).catch((err: unknown) => {
    throw asDiskFull(err, dir, what);
  });
}

/** Removes `dir/name`; gone already is fine. The removal is made durable lazily (by the next folder sync). */
export async function removeFile(dir: string, name: string): Promise<void> {
  await unlink(path.join(dir, name)).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') throw err;
  });
}

/** Temporary files a crash left in `dir` (never a live write: this runs before any), removed; their names returned. */
export async function sweepTemporaryFiles(dir: string): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const stale = names.filter((n) => n.endsWith(TMP_SUFFIX));
  await Promise.all(stale.map((n) => removeFile(dir, n)));
  return stale;
}

/** Moves an unreadable file aside into `dir/unreadable/`, stamped, so it is kept for the operator and never read again. */
export async function moveAside(dir: string, name: string): Promise<string> {
  const aside = path.join(dir, 'unreadable');
  await mkdir(aside, { recursive: true, mode: 0o700 });
  const target = path.join(aside, `${name}.${new Date().toISOString().replace(/[:.]/g, '-')}`);
  await rename(path.join(dir, name), target);
  return target;
}
