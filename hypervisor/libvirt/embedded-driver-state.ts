/**
 * What this process did with libvirt's embedded QEMU driver. libvirt starts
 * that driver once per process, at the first `qemu:///embed` open, for one
 * root, and keeps it (and its lock on the root) until the process exits —
 * even after every connection is closed. If that first start fails (the root
 * is busy, say), the driver stays down for the rest of the process and every
 * later embedded open answers "qemu state driver is not active".
 */
import type { LibvirtError } from './error.js';

export interface EmbeddedDriverState {
  /** The root this process embeds, once an open succeeded. */
  root: string | null;
  /** The error of the first, failed start of the driver, when it failed. */
  failure: LibvirtError | null;
}

const state: EmbeddedDriverState = { root: null, failure: null };

export function embeddedDriverState(): Readonly<EmbeddedDriverState> {
  return state;
}

export function noteEmbeddedOpened(root: string): void {
  state.root ??= root;
}

/** Records a failed open that left the driver down (only the first one matters: it names the cause). */
export function noteEmbeddedStartFailed(error: LibvirtError): void {
  if (state.root === null) state.failure ??= error;
}
