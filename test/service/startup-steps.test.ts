/**
 * service/startup-steps.ts: each start-up step logged with its name and
 * duration; a failure logged with its step, duration and code and raised
 * as StartupFailed naming the step and keeping its cause; an interruption
 * passed through as it is.
 */
import { describe, expect, it } from 'vitest';
import { Interrupted } from '../../config/interrupted.js';
import { NovaletError } from '../../config/novalet-error.js';
import { startupStep, StartupFailed } from '../../service/startup-steps.js';
import { capturedLogger } from '../support/captured-logger.js';

interface Line {
  level: number;
  msg: string;
  step?: string;
  ms?: number;
  code?: string;
}

describe('startupStep', () => {
  it("logs a step that worked with its name and duration, and gives back the work's result", async () => {
    const logger = capturedLogger<Line>();
    const result = await startupStep(logger.log, 'broker connection', async () => {
      await new Promise((resolve) => setTimeout(resolve, 30));
      return 42;
    });
    expect(result).toBe(42);
    expect(logger.lines).toEqual([expect.objectContaining({ level: 30, step: 'broker connection', msg: 'start-up: broker connection done' })]);
    expect(logger.lines[0]!.ms).toBeGreaterThanOrEqual(25);
  });

  it('raises StartupFailed naming the step, with the cause and its code, after an ERROR line', async () => {
    const logger = capturedLogger<Line>();
    const cause = new NovaletError('API_LISTEN_FAILED', 'The HTTP API cannot listen: port taken.', 'Free it.');
    const error = await startupStep(logger.log, 'HTTP API on 127.0.0.1:8789', async () => {
      throw cause;
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(StartupFailed);
    expect(error).toBeInstanceOf(NovaletError);
    expect(error).toMatchObject({ step: 'HTTP API on 127.0.0.1:8789', causedBy: cause, code: 'API_LISTEN_FAILED' });
    expect((error as Error).message).toBe("start-up step 'HTTP API on 127.0.0.1:8789' failed: The HTTP API cannot listen: port taken. Free it.");
    expect(logger.lines).toEqual([
      expect.objectContaining({ level: 50, step: 'HTTP API on 127.0.0.1:8789', code: 'API_LISTEN_FAILED', msg: 'start-up: HTTP API on 127.0.0.1:8789 failed: The HTTP API cannot listen: port taken. Free it.' }),
    ]);
  });

  it('gives a failure that is not a NovaletError the code INTERNAL', async () => {
    const logger = capturedLogger<Line>();
    const error = await startupStep(logger.log, 'capabilities', async () => {
      throw new TypeError('x is undefined');
    }).catch((e: unknown) => e);
    expect(error).toMatchObject({ step: 'capabilities', code: 'INTERNAL' });
    expect(logger.lines[0]).toMatchObject({ code: 'INTERNAL', msg: 'start-up: capabilities failed: x is undefined' });
  });

  it('passes an interruption through: a signal during start-up is not a failed step', async () => {
    const logger = capturedLogger<Line>();
    const interrupted = new Interrupted('SIGTERM');
    const error = await startupStep(logger.log, 'host', async () => {
      throw interrupted;
    }).catch((e: unknown) => e);
    expect(error).toBe(interrupted);
    expect(logger.lines).toEqual([]);
  });
});
