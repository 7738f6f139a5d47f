/**
 * Failures to open a connection whose cause libvirt's words only hint at,
 * told apart and named in novalet's words:
 * - another process holds an embedded root DIR: libvirt cannot lock
 *   DIR/run/qemu/driver.pid (VIR_ERR_SYSTEM_ERROR "Failed to acquire pid
 *   file ... driver.pid") → EMBEDDED_ROOT_BUSY.
 * - this process already embeds the driver at another root: libvirt allows one
 *   root per process, for the life of the process, even after every
 *   connection is closed (VIR_ERR_INTERNAL_ERROR "Cannot open embedded driver
 *   at path ..., already open with path ...") → EMBEDDED_ROOT_CONFLICT.
 * - libvirt's embedded driver failed to start earlier in this process and
 *   stays down (VIR_ERR_INTERNAL_ERROR "qemu state driver is not active")
 *   → EMBEDDED_DRIVER_DOWN, naming the earlier failure.
 * - no libvirt daemon listens for a system URI (VIR_FROM_RPC "Failed to
 *   connect socket to '/var/run/libvirt/libvirt-sock'") → LIBVIRTD_UNREACHABLE.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { embeddedDriverState } from './embedded-driver-state.js';
import { embeddedRootOf } from './embedded-root.js';
import { LibvirtError } from './error.js';

function holderPid(dir: string): number | null {
  try {
    const pid = Number.parseInt(readFileSync(path.join(dir, 'run/qemu/driver.pid'), 'utf8').trim(), 10);
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

/** A more precise error for a failed virConnectOpen(uri), or the error itself. */
export function explainOpenFailure(uri: string, error: LibvirtError): LibvirtError {
  const root = embeddedRootOf(uri);
  if (root !== null) return explainEmbeddedOpenFailure(root, error);
  const socket = /Failed to connect socket to '([^']*)'/.exec(error.libvirtMessage);
  if (socket !== null) {
    return new LibvirtError(error.operation, error.record, {
      code: 'LIBVIRTD_UNREACHABLE',
      remedy: `No libvirt daemon listens on ${socket[1] ?? 'its socket'}: start it (systemctl start libvirtd, or virtqemud with the modular daemons), or use libvirt's embedded driver (connection_uri = qemu:///embed?root=DIR).`,
    });
  }
  return error;
}

/** A more precise error for a failed open of `qemu:///embed?root=dir`, or the error itself. */
export function explainEmbeddedOpenFailure(dir: string, error: LibvirtError): LibvirtError {
  const message = error.libvirtMessage;
  if (error.libvirtCodeName === 'VIR_ERR_SYSTEM_ERROR' && message.includes('driver.pid')) {
    const pid = holderPid(dir);
    const holder = pid === null ? 'another process' : `another process (pid ${pid})`;
    return new LibvirtError(error.operation, error.record, {
      code: 'EMBEDDED_ROOT_BUSY',
      message: `The embedded libvirt root ${dir} is in use by ${holder}: libvirt lets one process at a time hold it (${path.join(dir, 'run/qemu/driver.pid')} is locked; libvirt said: ${message}).`,
      remedy:
        'Stop the other novalet compute (or virsh) using this root, or give this one its own root directory ([DEFAULT] state_path or the embedded URI). ' +
        "libvirt does not start its embedded driver twice in one process: start this process again once the root is free.",
    });
  }
  if (message.includes('qemu state driver is not active')) {
    const earlier = embeddedDriverState().failure;
    return new LibvirtError(error.operation, error.record, {
      code: 'EMBEDDED_DRIVER_DOWN',
      message:
        `libvirt's embedded QEMU driver is down in this process, so it cannot open ${dir}: ` +
        (earlier === null ? 'it failed to start earlier' : `it failed to start earlier (${earlier.message})`) +
        ' and libvirt does not start it again.',
      remedy: 'Remove the cause and start the process again.',
    });
  }
  const other = /already open with path '([^']*)'/.exec(message);
  if (other !== null) {
    return new LibvirtError(error.operation, error.record, {
      code: 'EMBEDDED_ROOT_CONFLICT',
      message: `This process already embeds libvirt's QEMU driver at ${other[1] ?? 'another root'}, so it cannot open ${dir} too: libvirt allows one embedded root per process, until the process exits.`,
      remedy: `Use qemu:///embed?root=${other[1] ?? '<that root>'} again in this process, or open ${dir} from another process.`,
    });
  }
  return error;
}
