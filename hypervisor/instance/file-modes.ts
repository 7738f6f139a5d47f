/**
 * The modes of the folders and files novalet keeps guests' disks in: the
 * image cache (`<instances_path>/_base`) and each instance's folder. Images
 * and overlays hold guests' data, so nobody but the user QEMU runs as may
 * read them; how far the folders must open depends on who QEMU runs as.
 *
 * - Embedded driver (connection_uri empty, `qemu:///embed?...`) and
 *   `qemu:///session`: QEMU runs as novalet's own user (the embedded root's
 *   qemu.conf says user = group = "root", see libvirt/embedded-root.ts), so
 *   folders are 0700 and files 0600: owner only.
 * - `qemu:///system` (and any other URI): QEMU runs as libvirt-qemu. libvirt's
 *   DAC driver chowns the disk files (the overlay and its backing image in
 *   _base) to that user before QEMU starts, but never their parent folders,
 *   so QEMU must be able to pass through them: folders are 0711 — search
 *   only, nothing can be listed — and files stay 0600, readable only by
 *   their owner, whom libvirt sets. 0711 needs no knowledge of the QEMU
 *   group (qemu.conf's `group`), which 0750 with a chgrp would. This relies
 *   on libvirt's dynamic_ownership (on by default); with it off, libvirt
 *   chowns nothing and QEMU cannot read the 0600 files.
 */

export interface FileModes {
  dir: number;
  file: number;
}

export const PRIVATE_MODES: FileModes = { dir: 0o700, file: 0o600 };
export const QEMU_USER_APART_MODES: FileModes = { dir: 0o711, file: 0o600 };

/** The modes for a connection URI as effectiveConnectionUri gives it. */
export function fileModesFor(connectionUri: string): FileModes {
  return /^qemu:\/\/\/(embed|session)(\?|$)/.test(connectionUri) ? PRIVATE_MODES : QEMU_USER_APART_MODES;
}
