/**
 * Opens an embedded libvirt root from a small pool of roots under one base
 * directory (BASE/slot-0, BASE/slot-1, …), taking the first that no other
 * process holds. Each root keeps its QEMU capability cache, so a pool reused
 * across runs skips the seconds-long QEMU probe after the first use of a slot,
 * while processes running side by side (parallel test files, several
 * `novalet run`s) each get a root of their own.
 *
 * libvirt allows one embedded root per process for the life of the process;
 * when this process already holds a slot of the same pool, that slot is
 * opened again.
 */
import path from 'node:path';
import { NovaletError } from '../../config/novalet-error.js';
import { prepareEmbeddedRoot } from './embedded-root.js';
import { LibvirtConnection } from './libvirt-connection.js';
import { LibvirtError } from './libvirt-error.js';

export const DEFAULT_EMBEDDED_POOL_SIZE = 4;

export interface EmbeddedPoolConnection {
  connection: LibvirtConnection;
  /** The root directory the connection embeds. */
  root: string;
}

function slot(base: string, index: number): string {
  return path.join(base, `slot-${index}`);
}

/** Opens the first free root of the pool under `base`, with its root directory. */
export async function openEmbeddedRootFromPool(base: string, size = DEFAULT_EMBEDDED_POOL_SIZE): Promise<EmbeddedPoolConnection> {
  const slots = Array.from({ length: size }, (_, index) => slot(path.resolve(base), index));
  const busy: string[] = [];
  for (const root of slots) {
    try {
      return { connection: await LibvirtConnection.open(await prepareEmbeddedRoot(root)), root };
    } catch (error) {
      if (!(error instanceof LibvirtError)) throw error;
      if (error.code === 'EMBEDDED_ROOT_BUSY') {
        busy.push(root);
        continue;
      }
      const held = /already open with path '([^']*)'/.exec(error.libvirtMessage)?.[1];
      if (error.code === 'EMBEDDED_ROOT_CONFLICT' && held !== undefined && slots.includes(path.resolve(held))) {
        return { connection: await LibvirtConnection.open(await prepareEmbeddedRoot(held)), root: held };
      }
      throw error;
    }
  }
  throw new NovaletError(
    'EMBEDDED_ROOT_POOL_EXHAUSTED',
    `Every embedded libvirt root under ${base} is held by another process (${busy.join(', ')}).`,
    'Wait for one of those processes to finish, or stop it, and try again.',
  );
}

/** Opens the first free root of the pool under `base`. */
export async function openEmbeddedFromPool(base: string, size = DEFAULT_EMBEDDED_POOL_SIZE): Promise<LibvirtConnection> {
  return (await openEmbeddedRootFromPool(base, size)).connection;
}
