/**
 * A real pino logger at debug level, without novalet's redaction, writing
 * into memory: what a module hands its logger must be clean by itself. The
 * raw lines and the lines parsed.
 */
import { createRequire } from 'node:module';
import { Writable } from 'node:stream';
import type { Logger, pino as Pino } from 'pino';

export interface CapturedLogger<Line> {
  log: Logger;
  /** Each line as written. */
  raw: string[];
  /** Each line parsed as JSON, as of now. */
  readonly lines: Line[];
}

export function capturedLogger<Line = Record<string, unknown>>(): CapturedLogger<Line> {
  const raw: string[] = [];
  let partial = '';
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      const parts = (partial + chunk.toString('utf8')).split('\n');
      partial = parts.pop()!;
      raw.push(...parts.filter(Boolean));
      done();
    },
  });
  const { pino } = createRequire(import.meta.url)('pino') as { pino: typeof Pino };
  return {
    log: pino({ level: 'debug' }, stream),
    raw,
    get lines() {
      return raw.map((line) => JSON.parse(line) as Line);
    },
  };
}
