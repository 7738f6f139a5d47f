/**
 * libvirt's calls cannot be interrupted once they run on a call thread, and
 * one of them can take seconds: the first query of an emulator in a fresh
 * embedded root, where libvirt probes the QEMU binary (about 2 s each here,
 * 8–12 s for all of them). A command ended by a signal or by its --timeout
 * must not wait for it. `untilAborted` lets the caller stop waiting at the
 * abort; the call goes on and is counted here until it ends, so that the
 * connection is not closed under it (compute-host.ts) and a command's
 * process exits without waiting for it (cli/main.ts). Node's exit still
 * waits for a call thread inside a native call, so the exit first ends the
 * probe: `endProbes` stops the QEMU that libvirt is probing in this
 * process's embedded root, and libvirt's call then fails at once.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { embeddedDriverState } from './embedded-driver-state.js';

let abandoned = 0;

/** Calls whose callers stopped waiting for them at an abort, still running. */
export function abandonedCalls(): number {
  return abandoned;
}

function abandon(work: Promise<unknown>): void {
  abandoned += 1;
  const ended = (): void => {
    abandoned -= 1;
  };
  work.then(ended, ended);
}

/**
 * `work`'s outcome, or, when `signal` aborts first, a rejection with the
 * signal's reason at once (`work` goes on, counted as abandoned). Use it
 * only for work that makes nothing the caller would have to remove: a query.
 */
export function untilAborted<T>(work: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return work;
  if (signal.aborted) {
    abandon(work);
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => {
      abandon(work);
      reject(signal.reason);
    };
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}

/**
 * Stops (SIGKILL) the QEMU processes libvirt runs to probe emulators in the
 * embedded root this process holds (`-qmp unix:ROOT/lib/qemu/qmp-…`, as
 * libvirt 9 to 11 start them), and returns their pids. Only this process
 * probes in its root (libvirt's lock), so nobody else's work is touched;
 * guests' QEMUs are never named so. Nothing when libvirt is not embedded here.
 */
export function endProbes(): number[] {
  const root = embeddedDriverState().root;
  if (root === null) return [];
  const probing = `unix:${path.join(root, 'lib/qemu')}/qmp-`;
  const stopped: number[] = [];
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((name) => /^\d+$/.test(name));
  } catch {
    return [];
  }
  for (const pid of pids) {
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    } catch {
      continue;
    }
    if (!path.basename(argv[0] ?? '').startsWith('qemu-system-') || !argv.some((arg) => arg.startsWith(probing))) continue;
    try {
      process.kill(Number(pid), 'SIGKILL');
      stopped.push(Number(pid));
    } catch {
      // Gone meanwhile.
    }
  }
  return stopped;
}
