import { parseArgs, type ParseArgsConfig } from 'node:util';
import { CliUsageError } from './cli-usage-error.js';

/** Options every command that reads the configuration takes, as oslo.config's. */
export const CONFIG_OPTIONS = {
  'config-file': { type: 'string', multiple: true },
  'config-dir': { type: 'string', multiple: true },
  debug: { type: 'boolean', short: 'd' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies ParseArgsConfig['options'];

/** parseArgs with errors turned into a one-line usage error naming the command. */
export function parseCommandArgs<T extends NonNullable<ParseArgsConfig['options']>>(
  command: string,
  args: string[],
  options: T,
) {
  try {
    return parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (err) {
    throw new CliUsageError(`${command}: ${(err as Error).message.replace(/\s+/g, ' ').trim()}`);
  }
}
