/**
 * Opens an embedded libvirt root from a small pool of roots under one base
 * directory (BASE/slot-0, BASE/slot-1, …), taking the first that no other
 * process holds. Each root keeps its QEMU capability cache, so a pool reused
 * across runs skips the seconds-long QEMU probe after the first use of a slot,
 * while processes running side by side (parallel test files, several
 * `novalet run`s) each get a root of their own.
 *
 * libvirt starts its embedded driver once per process, for one root, and a
 * failed start cannot be retried (embedded-driver-state.ts). So the pool never
 * lets libvirt find a slot busy: a process first claims a slot (a lock file
 * beside it, BASE/slot-N.claim, held until the process exits, so processes
 * starting together never reach for the same slot), then checks that no
 * process outside the pool holds the root itself (virsh, a novalet compute),
 * and only then opens it. A process that already embeds a slot of the pool
 * gets that slot again.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { NovaletError } from '../../config/novalet-error.js';
import { embeddedDriverState } from './embedded-driver-state.js';
import { claimForProcess, embeddedRootHolder, releaseClaim } from './embedded-root-lock.js';
import { prepareEmbeddedRoot } from './embedded-root.js';
import { stopOrphanedQemus } from './embedded-root-orphans.js';
import { LibvirtConnection } from './connection.js';

export const DEFAULT_EMBEDDED_POOL_SIZE = 4;

export interface EmbeddedPoolConnection {
  connection: LibvirtConnection;
  /** The root directory the connection embeds. */
  root: string;
}

/** Opens the first free root of the pool under `base`, with its root directory. */
export async function openEmbeddedRootFromPool(base: string, size = DEFAULT_EMBEDDED_POOL_SIZE): Promise<EmbeddedPoolConnection> {
  const slots = Array.from({ length: size }, (_, index) => path.join(path.resolve(base), `slot-${index}`));
  const driver = embeddedDriverState();
  if (driver.root !== null) {
    if (!slots.includes(driver.root)) {
      throw new NovaletError(
        'EMBEDDED_ROOT_CONFLICT',
        `This process already embeds libvirt's QEMU driver at ${driver.root}, outside the pool under ${base}: libvirt allows one embedded root per process.`,
        `Open qemu:///embed?root=${driver.root} again, or use the pool from another process.`,
      );
    }
    return { connection: await LibvirtConnection.open(await prepareEmbeddedRoot(driver.root)), root: driver.root };
  }
  if (driver.failure !== null) {
    throw new NovaletError(
      'EMBEDDED_DRIVER_DOWN',
      `libvirt's embedded QEMU driver failed to start earlier in this process (${driver.failure.message}) and libvirt does not start it again.`,
      'Remove the cause and start the process again.',
    );
  }
  const busy: string[] = [];
  for (const root of slots) {
    const claim = `${root}.claim`;
    if (!claimForProcess(claim)) {
      busy.push(`${root} (claimed)`);
      continue;
    }
    const holder = embeddedRootHolder(root);
    if (holder !== null) {
      releaseClaim(claim);
      busy.push(`${root} (pid ${holder})`);
      continue;
    }
    stopOrphansInFreeSlots(slots.filter((other) => other !== root));
    return { connection: await LibvirtConnection.open(await prepareEmbeddedRoot(root)), root };
  }
  throw new NovaletError(
    'EMBEDDED_ROOT_POOL_EXHAUSTED',
    `Every embedded libvirt root under ${base} is held by another process: ${busy.join(', ')}.`,
    'Wait for one of those processes to finish, or stop it, and try again.',
  );
}

/**
 * Stops the QEMUs that killed processes left running in the slots nobody
 * holds (embedded-root-orphans.ts): without this they would run until a
 * process happened to open their slot again. A slot is passed over while
 * claimed for a moment, so that nobody opens it meanwhile.
 */
function stopOrphansInFreeSlots(others: string[]): void {
  for (const root of others) {
    const claim = `${root}.claim`;
    if (!existsSync(path.join(root, 'run/qemu')) || !claimForProcess(claim)) continue;
    try {
      if (embeddedRootHolder(root) === null) stopOrphanedQemus(root);
    } finally {
      releaseClaim(claim);
    }
  }
}
