import { NovaletError } from '../config/novalet-error.js';

/** Wrong command-line arguments: exit status 2, like a bad configuration. */
export class CliUsageError extends NovaletError {
  constructor(message: string, remedy = 'Run `novalet --help` for the commands and their options.') {
    super('CLI_USAGE', message, remedy);
  }
}
