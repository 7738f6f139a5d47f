import type { Logger } from '../config/logger.js';
import { DEAD_LETTER } from './topology.js';
import type { DeadLetterCode } from './contracts/dead-letter.js';

/**
 * The log lines of dead letters, rate-limited with a count: the first dead
 * letter of a period is logged whole, the others of that period are counted
 * by code and told in one summary line when the period ends (or at stop).
 * A flood of 5,000 bad messages makes two lines a period, not 5,000; each
 * message keeps its own reason in its headers on `novalet.dead`.
 *
 * HANDLER_FAILED is a bug of the receiving service, so its lines (and a
 * summary that counts one) are errors; the others are what a sender got
 * wrong, warnings.
 */

export const DEAD_LETTER_LOG_PERIOD_MS = 60_000;

interface Period {
  began: number;
  timer: NodeJS.Timeout;
  counts: Map<DeadLetterCode, number>;
}

export class DeadLetterLog {
  private period: Period | null = null;

  constructor(
    private readonly log: Logger,
    private readonly periodMs = DEAD_LETTER_LOG_PERIOD_MS,
  ) {}

  /** One dead letter: `line` is its whole log line, logged if it is the first of a period. */
  record(code: DeadLetterCode, line: string, fields: { queue?: string } = {}): void {
    if (this.period) {
      this.period.counts.set(code, (this.period.counts.get(code) ?? 0) + 1);
      return;
    }
    const timer = setTimeout(() => this.flush(), this.periodMs);
    // A summary still to come must not keep the process alive.
    timer.unref();
    this.period = { began: Date.now(), timer, counts: new Map() };
    this.write(code === 'HANDLER_FAILED', fields, line);
  }

  /** Ends the period now: its summary, if anything was counted; the next dead letter is logged whole. */
  flush(): void {
    const period = this.period;
    if (!period) return;
    this.period = null;
    clearTimeout(period.timer);
    const total = [...period.counts.values()].reduce((sum, n) => sum + n, 0);
    if (total === 0) return;
    const codes = [...period.counts.entries()]
      .sort(([a, m], [b, n]) => n - m || a.localeCompare(b))
      .map(([code, n]) => `${code}: ${n}`)
      .join(', ');
    const seconds = Math.max(1, Math.round((Date.now() - period.began) / 1000));
    this.write(
      period.counts.has('HANDLER_FAILED'),
      {},
      `${total} more ${total === 1 ? 'message was' : 'messages were'} moved to ${DEAD_LETTER} in the ${seconds} seconds after the one logged in full (${codes}); each carries its reason in its x-novalet-reason header.`,
    );
  }

  private write(error: boolean, fields: { queue?: string }, line: string): void {
    if (error) this.log.error(fields, line);
    else this.log.warn(fields, line);
  }
}
