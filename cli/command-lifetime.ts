import { Interrupted } from '../config/interrupted.js';

/** The signals that end a command: Ctrl-C, a stop (systemd, kill), a closed terminal. */
export const ENDING_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

/**
 * The reason a command's lifetime aborts with when its own time limit
 * passes (`novalet run --timeout`): exit 124, as timeout(1) reports it.
 */
export class TimedOut extends Error {
  readonly exitStatus = 124;

  constructor(readonly seconds: number) {
    super(`--timeout ${seconds} s reached`);
    this.name = 'TimedOut';
  }
}

/**
 * One clean-up path for SIGINT, SIGTERM and SIGHUP in a command that starts
 * something (a download, the self-test's guest, an instance), and for its
 * time limit. The first signal, or the limit, aborts `signal` with an
 * Interrupted or a TimedOut reason; each phase takes the signal, removes
 * what it started in its `finally`, and rejects; the command exits
 * 128 + the signal's number, or 124. While the lifetime is open, further
 * signals are ignored rather than left to kill the process half-way through
 * its clean-up — a Ctrl-C arrives twice under a relaunching parent (from the
 * terminal and passed on).
 */
export class CommandLifetime {
  readonly #controller = new AbortController();
  readonly #signals: readonly NodeJS.Signals[];
  #limit: NodeJS.Timeout | null = null;
  readonly #onSignal = (signal: NodeJS.Signals): void => {
    if (!this.#controller.signal.aborted) this.#controller.abort(new Interrupted(signal));
  };

  // A closed terminal (SIGHUP) turns writes to it into EIO/EPIPE errors; unhandled, one would kill the process mid clean-up.
  readonly #onOutputError = (error: NodeJS.ErrnoException): void => {
    if (error.code !== 'EIO' && error.code !== 'EPIPE') throw error;
  };

  /**
   * `signals`: the signals that end this command (all of ENDING_SIGNALS by
   * default); a service that reloads its configuration on SIGHUP, as
   * oslo.service does, leaves SIGHUP out and handles it itself.
   */
  constructor(options: { signals?: readonly NodeJS.Signals[] } = {}) {
    this.#signals = options.signals ?? ENDING_SIGNALS;
    for (const name of this.#signals) process.on(name, this.#onSignal);
    process.stdout.on('error', this.#onOutputError);
    process.stderr.on('error', this.#onOutputError);
  }

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  /**
   * Ends the lifetime `seconds` from now, as a signal would, with a TimedOut
   * reason: the limit covers every phase that takes the signal, from the
   * first (the host's assembly, libvirt's first probe of QEMU, the
   * self-test, the download) to the last.
   */
  limit(seconds: number): void {
    if (this.#limit !== null) clearTimeout(this.#limit);
    this.#limit = setTimeout(() => {
      if (!this.#controller.signal.aborted) this.#controller.abort(new TimedOut(seconds));
    }, seconds * 1000);
  }

  /** The interruption, once a signal came. */
  get interrupted(): Interrupted | null {
    const reason: unknown = this.#controller.signal.reason;
    return reason instanceof Interrupted ? reason : null;
  }

  /** Why the lifetime ended before the command was done: a signal or the time limit; null while it has not. */
  get ended(): Interrupted | TimedOut | null {
    const reason: unknown = this.#controller.signal.reason;
    return reason instanceof Interrupted || reason instanceof TimedOut ? reason : null;
  }

  /** Gives the signals back to their default action (the command is done). */
  close(): void {
    if (this.#limit !== null) clearTimeout(this.#limit);
    this.#limit = null;
    for (const name of this.#signals) process.off(name, this.#onSignal);
    process.stdout.off('error', this.#onOutputError);
    process.stderr.off('error', this.#onOutputError);
  }
}
