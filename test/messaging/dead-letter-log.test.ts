/**
 * The rate limit of dead-letter log lines (messaging/dead-letter-log.ts):
 * its period is the behaviour, so the clock is vitest's.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { DeadLetterLog } from '../../messaging/dead-letter-log.js';
import { capturedLogger } from '../support/captured-logger.js';

interface Line {
  level: number;
  msg: string;
  queue?: string;
}

const PERIOD_MS = 60_000;

beforeEach(() => {
  vi.useFakeTimers();
});

afterEach(() => {
  vi.useRealTimers();
});

function limited() {
  const logger = capturedLogger<Line>();
  return { deadLetters: new DeadLetterLog(logger.log, PERIOD_MS), logger };
}

describe('DeadLetterLog', () => {
  it('logs the first dead letter of a period whole and the 4,999 others of it as one summary line with the count by code', () => {
    const { deadLetters, logger } = limited();
    deadLetters.record('BODY_INVALID', 'first one, whole', { queue: 'novalet.compute.a' });
    for (let n = 1; n < 5000; n++) deadLetters.record(n % 10 === 0 ? 'MESSAGE_NOT_JSON' : 'BODY_INVALID', `line ${n}`, { queue: 'novalet.compute.a' });
    expect(logger.lines).toEqual([expect.objectContaining({ level: 40, msg: 'first one, whole', queue: 'novalet.compute.a' })]);

    vi.advanceTimersByTime(PERIOD_MS - 1);
    expect(logger.lines).toHaveLength(1);
    vi.advanceTimersByTime(1);
    expect(logger.lines).toHaveLength(2);
    // 4,999 more: 499 not JSON, 4,500 invalid bodies; the most frequent first.
    expect(logger.lines[1]).toMatchObject({ level: 40 });
    expect(logger.lines[1]!.msg).toBe(
      '4999 more messages were moved to novalet.dead in the 60 seconds after the one logged in full (BODY_INVALID: 4500, MESSAGE_NOT_JSON: 499); each carries its reason in its x-novalet-reason header.',
    );
    expect(logger.raw.join('\n')).not.toContain('line 1');
  });

  it('starts a new period with the next dead letter: logged whole again; a quiet period ends without a summary', () => {
    const { deadLetters, logger } = limited();
    deadLetters.record('KIND_UNKNOWN', 'alone');
    vi.advanceTimersByTime(PERIOD_MS * 3);
    expect(logger.lines.map((l) => l.msg)).toEqual(['alone']);

    deadLetters.record('BODY_INVALID', 'second period, whole');
    deadLetters.record('BODY_INVALID', 'counted');
    vi.advanceTimersByTime(PERIOD_MS);
    deadLetters.record('ENVELOPE_INVALID', 'third period, whole');
    expect(logger.lines.map((l) => l.msg)).toEqual([
      'alone',
      'second period, whole',
      '1 more message was moved to novalet.dead in the 60 seconds after the one logged in full (BODY_INVALID: 1); each carries its reason in its x-novalet-reason header.',
      'third period, whole',
    ]);
  });

  it('says at flush (stop) what it counted so far, once', () => {
    const { deadLetters, logger } = limited();
    deadLetters.record('BODY_INVALID', 'whole');
    vi.advanceTimersByTime(12_000);
    deadLetters.record('MESSAGE_TOO_LARGE', 'counted');
    deadLetters.flush();
    deadLetters.flush();
    vi.advanceTimersByTime(PERIOD_MS * 2);
    expect(logger.lines.map((l) => l.msg)).toEqual([
      'whole',
      '1 more message was moved to novalet.dead in the 12 seconds after the one logged in full (MESSAGE_TOO_LARGE: 1); each carries its reason in its x-novalet-reason header.',
    ]);
  });

  it("logs HANDLER_FAILED (the receiving service's bug) as an error, and a summary that counts one", () => {
    const { deadLetters, logger } = limited();
    deadLetters.record('HANDLER_FAILED', 'the handler failed');
    deadLetters.record('BODY_INVALID', 'counted');
    vi.advanceTimersByTime(PERIOD_MS);
    deadLetters.record('BODY_INVALID', 'whole');
    deadLetters.record('HANDLER_FAILED', 'counted');
    deadLetters.flush();
    deadLetters.record('BODY_INVALID', 'whole again');
    deadLetters.record('BODY_INVALID', 'counted');
    deadLetters.flush();
    expect(logger.lines.map((l) => l.level)).toEqual([50, 40, 40, 50, 40, 40]);
    expect(logger.lines[3]!.msg).toContain('(HANDLER_FAILED: 1)');
  });

  it('holds a timer only while a period is open', () => {
    const { deadLetters } = limited();
    expect(vi.getTimerCount()).toBe(0);
    deadLetters.record('BODY_INVALID', 'whole');
    expect(vi.getTimerCount()).toBe(1);
    vi.advanceTimersByTime(PERIOD_MS);
    expect(vi.getTimerCount()).toBe(0);
  });
});
