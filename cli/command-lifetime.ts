import { Interrupted } from '../config/interrupted.js';

/** The signals that end a command: Ctrl-C, a stop (systemd, kill), a closed terminal. */
export const ENDING_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

/**
 * One clean-up path for SIGINT, SIGTERM and SIGHUP in a command that starts
 * something (a download, the self-test's guest, an instance). The first
 * signal aborts `signal` with an Interrupted reason; each phase takes the
 * signal, removes what it started in its `finally`, and rejects; the command
 * exits 128 + the signal's number. While the lifetime is open, further
 * signals are ignored rather than left to kill the process half-way through
 * its clean-up — a Ctrl-C arrives twice under a relaunching parent (from the
 * terminal and passed on).
 */
export class CommandLifetime {
  readonly #controller = new AbortController();
  readonly #onSignal = (signal: NodeJS.Signals): void => {
    if (!this.#controller.signal.aborted) this.#controller.abort(new Interrupted(signal));
  };

  // A closed terminal (SIGHUP) turns writes to it into EIO/EPIPE errors; unhandled, one would kill the process mid clean-up.
  readonly #onOutputError = (error: NodeJS.ErrnoException): void => {
    if (error.code !== 'EIO' && error.code !== 'EPIPE') throw error;
  };

  constructor() {
    for (const name of ENDING_SIGNALS) process.on(name, this.#onSignal);
    process.stdout.on('error', this.#onOutputError);
    process.stderr.on('error', this.#onOutputError);
  }

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  /** The interruption, once a signal came. */
  get interrupted(): Interrupted | null {
    const reason: unknown = this.#controller.signal.reason;
    return reason instanceof Interrupted ? reason : null;
  }

  /** Gives the signals back to their default action (the command is done). */
  close(): void {
    for (const name of ENDING_SIGNALS) process.off(name, this.#onSignal);
    process.stdout.off('error', this.#onOutputError);
    process.stderr.off('error', this.#onOutputError);
  }
}
