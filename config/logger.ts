import { pino, type Logger } from 'pino';
import { maskUrlCredentials } from './mask-credentials.js';

/**
 * novalet's structured logs: pino, JSON lines on stderr (stdout belongs to
 * command output). Lives in config/ because every folder may import config/.
 * Any field named transport_url or url has its credentials masked, and
 * password fields are censored, so that a broker password never reaches a log.
 */
export function createLogger(options: { debug?: boolean; name?: string } = {}): Logger {
  return pino(
    {
      name: options.name ?? 'novalet',
      level: options.debug ? 'debug' : (process.env.NOVALET_LOG_LEVEL ?? 'info'),
      redact: {
        paths: ['transport_url', '*.transport_url', 'url', '*.url', 'password', '*.password'],
        censor: (value, path) => {
          const key = path[path.length - 1];
          if (key === 'password') return '***';
          return typeof value === 'string' ? maskUrlCredentials(value) : value;
        },
      },
    },
    pino.destination({ fd: 2, sync: true }),
  );
}

export type { Logger };
