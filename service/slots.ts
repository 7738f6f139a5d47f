/**
 * At most `limit` pieces of work at once (nova's `[DEFAULT] max_concurrent_builds`;
 * 0: no limit); the rest wait their turn in arrival order. A waiter can be
 * given up (its signal aborts: a build whose instance was deleted, a stopping
 * service) without taking a slot, so a slot is only ever held by work that runs.
 */
export class Slots {
  #running = 0;
  readonly #waiting: { grant: () => void }[] = [];

  constructor(private limit: number) {}

  /** Work holding a slot now. */
  get running(): number {
    return this.#running;
  }

  /** Work waiting for a slot. */
  get waiting(): number {
    return this.#waiting.length;
  }

  /** A new limit (SIGHUP): more waiters start at once when it grows; running work is never stopped. */
  resize(limit: number): void {
    this.limit = limit;
    while (this.#waiting.length > 0 && (this.limit === 0 || this.#running < this.limit)) {
      this.#running += 1;
      this.#waiting.shift()!.grant();
    }
  }

  /** Runs `work` once a slot is free; rejects with the signal's reason if it aborts while waiting. */
  async run<T>(work: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    signal?.throwIfAborted();
    if (this.limit > 0 && this.#running >= this.limit) {
      await new Promise<void>((resolve, reject) => {
        const waiter = {
          grant: () => {
            signal?.removeEventListener('abort', onAbort);
            resolve();
          },
        };
        const onAbort = (): void => {
          const at = this.#waiting.indexOf(waiter);
          if (at >= 0) this.#waiting.splice(at, 1);
          reject(signal!.reason);
        };
        signal?.addEventListener('abort', onAbort, { once: true });
        this.#waiting.push(waiter);
      });
    } else {
      this.#running += 1;
    }
    try {
      return await work();
    } finally {
      const next = this.#waiting.shift();
      // The slot passes straight to the next waiter, so the count stays right.
      if (next) next.grant();
      else this.#running -= 1;
    }
  }
}
