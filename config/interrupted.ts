import { constants } from 'node:os';
import { NovaletError } from './novalet-error.js';

/**
 * The reason a command's lifetime aborts with (cli/command-lifetime.ts):
 * every phase that waits takes the lifetime's AbortSignal, removes what it
 * had started, and rejects with this. The command exits 128 + the signal's
 * number, as a shell reports a process killed by it.
 */
export class Interrupted extends NovaletError {
  constructor(readonly signal: NodeJS.Signals) {
    super('COMMAND_INTERRUPTED', `interrupted by ${signal}`);
  }

  get exitStatus(): number {
    return 128 + (constants.signals[this.signal] ?? 0);
  }
}
