import { createRequire } from 'node:module';
import type { Logger, pino as Pino } from 'pino';
import { maskUrlCredentials } from './mask-credentials.js';

interface LoggerOptions {
  debug?: boolean;
  name?: string;
  /** 2 (stderr, the commands' default: stdout is their output) or 1 (the compute service's, for journald). */
  destination?: 1 | 2;
}

const LEVELS: Record<string, number> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60, silent: Infinity };

function levelFor(options: LoggerOptions): string {
  return options.debug ? 'debug' : (process.env.NOVALET_LOG_LEVEL ?? 'info');
}

/**
 * novalet's structured logs: pino, JSON lines on stderr (stdout belongs to
 * command output). Lives in config/ because every folder may import config/.
 * Any field named transport_url or url has its credentials masked, and
 * password fields are censored, so that a broker password never reaches a log.
 */
export function createLogger(options: LoggerOptions = {}): Logger {
  // require(): pino is CommonJS, and imported as an ES module it is scanned for exports first.
  const { pino } = createRequire(import.meta.url)('pino') as { pino: typeof Pino };
  return pino(
    {
      name: options.name ?? 'novalet',
      level: levelFor(options),
      redact: {
        paths: ['transport_url', '*.transport_url', 'url', '*.url', 'password', '*.password'],
        censor: (value, path) => {
          const key = path[path.length - 1];
          if (key === 'password') return '***';
          return typeof value === 'string' ? maskUrlCredentials(value) : value;
        },
      },
    },
    pino.destination({ fd: options.destination ?? 2, sync: true }),
  );
}

/**
 * The same logger, but pino (some 35 ms of a command's start-up) is loaded
 * only when a line at an enabled level is written: most runs of a command log
 * nothing, and `novalet validate` has 0.5 s in all (bench/RESULTS.md). A
 * disabled level is a no-op without pino, as it is in pino.
 */
export function createDeferredLogger(options: LoggerOptions = {}): Logger {
  const level = levelFor(options);
  const threshold = LEVELS[level] ?? LEVELS.info!;
  let real: Logger | null = null;
  const noop = (): void => undefined;
  return new Proxy({} as Logger, {
    get(_target, key) {
      if (typeof key === 'string' && real === null) {
        const rank = LEVELS[key];
        if (rank !== undefined && key !== 'silent' && rank < threshold) return noop;
        if (key === 'level') return level;
        if (key === 'isLevelEnabled') return (asked: string) => (LEVELS[asked] ?? Infinity) >= threshold;
      }
      real ??= createLogger(options);
      const value: unknown = Reflect.get(real, key, real);
      return typeof value === 'function' ? value.bind(real) : value;
    },
    set(_target, key, value) {
      real ??= createLogger(options);
      return Reflect.set(real, key, value, real);
    },
  });
}

export type { Logger };
