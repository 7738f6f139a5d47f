import { fstatSync } from 'node:fs';
import { NovaletError } from '../../config/novalet-error.js';

/**
 * Why novalet starts with file descriptors 3–19 held open (on /dev/null):
 *
 * libvirt starts QEMU by forking twice (the child daemonizes). glibc runs
 * pthread_atfork child handlers in each child, and libuv registers one that
 * closes and re-creates its signal lock pipe, by the fd numbers it had in
 * the parent. A Node process started plainly gets that pipe at fds 4 and 5 —
 * exactly the numbers libvirt's first child gives its handshake pipe after
 * closing everything — so in the grandchild libuv closes libvirt's pipe and
 * QEMU fails to start with "Unable to notify child process: Bad file
 * descriptor". With 3–19 taken before Node starts, libuv's pipe lands above
 * them and the two never meet.
 */
export const RESERVED_FDS = { first: 3, last: 19 } as const;

/** Are fds 3–19 open in this process (they were reserved before Node started)? */
export function lowFdsReserved(): boolean {
  for (let fd = RESERVED_FDS.first; fd <= RESERVED_FDS.last; fd++) {
    try {
      fstatSync(fd);
    } catch {
      return false;
    }
  }
  return true;
}

export class LowFdsNotReservedError extends NovaletError {
  constructor() {
    super(
      'LOW_FDS_NOT_RESERVED',
      `This process was started without file descriptors ${RESERVED_FDS.first}–${RESERVED_FDS.last} reserved, so libvirt could not start QEMU from it ("Unable to notify child process: Bad file descriptor").`,
      'Start novalet through its `novalet` command (it reserves them itself), and tests through `npm test`; see hypervisor/libvirt/reserved-low-fds.ts.',
    );
  }
}

export function assertLowFdsReserved(): void {
  if (!lowFdsReserved()) throw new LowFdsNotReservedError();
}
