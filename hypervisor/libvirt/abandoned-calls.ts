/**
 * libvirt's calls cannot be interrupted once they run on a call thread, and
 * one of them can take seconds: the first query of an emulator in a fresh
 * embedded root, where libvirt probes the QEMU binary (about 2 s each here,
 * 8–12 s for all of them). A command ended by a signal or by its --timeout
 * must not wait for it. `untilAborted` lets the caller stop waiting at the
 * abort; the call goes on and is counted here until it ends, so that the
 * connection is not closed under it (compute-host.ts) and a command's
 * process exits without waiting for it (cli/main.ts). Ending the process
 * ends the call: libvirt's probing QEMU goes with its monitor.
 */

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
