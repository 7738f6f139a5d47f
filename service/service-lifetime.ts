/**
 * The signals of a long-running service, as oslo.service has them: SIGTERM
 * and SIGINT stop it (the first one aborts `signal`; the service finishes
 * what is under way and exits 0), SIGHUP reloads its configuration and it
 * keeps running ("Caught SIGHUP, handling"). A reload that fails is logged
 * and the service goes on with what it had.
 */
import { Interrupted } from '../config/interrupted.js';
import type { Logger } from '../config/logger.js';

export const STOPPING_SIGNALS = ['SIGINT', 'SIGTERM'] as const;

export class ServiceLifetime {
  readonly #controller = new AbortController();
  #reloading: Promise<void> = Promise.resolve();
  readonly #onStop = (signal: NodeJS.Signals): void => {
    if (!this.#controller.signal.aborted) this.#controller.abort(new Interrupted(signal));
  };
  readonly #onHangUp = (): void => {
    this.log.info({ signal: 'SIGHUP' }, 'Caught SIGHUP, handling');
    // One reload at a time, in the order the signals came.
    this.#reloading = this.#reloading.then(async () => {
      try {
        await this.reload();
      } catch (err) {
        this.log.error({ err }, 'the configuration could not be reloaded; the service goes on with the one it has');
      }
    });
  };

  constructor(
    private readonly log: Logger,
    /** Re-reads the configuration and applies what may change at run time. */
    private readonly reload: () => void | Promise<void>,
  ) {
    for (const name of STOPPING_SIGNALS) process.on(name, this.#onStop);
    process.on('SIGHUP', this.#onHangUp);
  }

  /** Aborts at the first SIGTERM or SIGINT. */
  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  get interrupted(): Interrupted | null {
    const reason: unknown = this.#controller.signal.reason;
    return reason instanceof Interrupted ? reason : null;
  }

  /** Resolves at the first SIGTERM or SIGINT. */
  stopped(): Promise<void> {
    return new Promise((resolve) => {
      if (this.signal.aborted) resolve();
      else this.signal.addEventListener('abort', () => resolve(), { once: true });
    });
  }

  /** Waits for a reload under way (tests). */
  settled(): Promise<void> {
    return this.#reloading;
  }

  close(): void {
    for (const name of STOPPING_SIGNALS) process.off(name, this.#onStop);
    process.off('SIGHUP', this.#onHangUp);
  }
}
