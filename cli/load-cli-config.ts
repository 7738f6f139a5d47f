import { loadConfig } from '../config/load-config.js';
import { createLogger, type Logger } from '../config/logger.js';
import type { LoadedConfig } from '../config/novalet-config.js';

export interface CliConfigArgs {
  'config-file'?: string[];
  'config-dir'?: string[];
  debug?: boolean;
}

/** Loads the configuration named on the command line and makes the logger it asks for. */
export function loadCliConfig(args: CliConfigArgs): { loaded: LoadedConfig; log: Logger } {
  const loaded = loadConfig({ configFiles: args['config-file'], configDirs: args['config-dir'] });
  const log = createLogger({ debug: Boolean(args.debug) || loaded.values.DEFAULT.debug });
  for (const item of loaded.ignored) {
    log.debug({ file: item.file, line: item.line, section: item.section, option: item.option }, 'ignoring an option novalet does not implement');
  }
  for (const item of loaded.deprecated) {
    log.warn(item, `option [${item.section}] ${item.usedName} is deprecated; use [${item.newSection}] ${item.name}`);
  }
  return { loaded, log };
}
