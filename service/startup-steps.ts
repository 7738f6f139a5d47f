/**
 * A service's start-up as named steps: each logged with its duration when
 * done; a failure logged with the step's name, its duration and code, and
 * raised as StartupFailed naming the step, so that the command can say
 * which step failed and exit 1. An interruption (SIGTERM during start-up)
 * is not a failure and passes through.
 */
import type { Logger } from '../config/logger.js';
import { Interrupted } from '../config/interrupted.js';
import { NovaletError } from '../config/novalet-error.js';

/** A start-up step that failed: its name, and what it failed with (`code` is that error's, INTERNAL for one that is not a NovaletError). */
export class StartupFailed extends NovaletError {
  constructor(
    readonly step: string,
    readonly causedBy: unknown,
  ) {
    super(causedBy instanceof NovaletError ? causedBy.code : 'INTERNAL', `start-up step '${step}' failed: ${causedBy instanceof Error ? causedBy.message : String(causedBy)}`);
  }
}

/** Runs `work` as the start-up step `name`: `start-up: <name> done` with `ms`, or `start-up: <name> failed: <message>` and StartupFailed. */
export async function startupStep<T>(log: Logger, name: string, work: () => Promise<T>): Promise<T> {
  const started = performance.now();
  try {
    const result = await work();
    log.info({ step: name, ms: Math.round(performance.now() - started) }, `start-up: ${name} done`);
    return result;
  } catch (err) {
    if (err instanceof Interrupted) throw err;
    const message = err instanceof Error ? err.message : String(err);
    log.error({ step: name, ms: Math.round(performance.now() - started), code: err instanceof NovaletError ? err.code : 'INTERNAL' }, `start-up: ${name} failed: ${message}`);
    throw new StartupFailed(name, err);
  }
}
