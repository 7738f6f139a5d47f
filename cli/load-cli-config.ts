import { mkdirSync } from 'node:fs';
import { machine } from 'node:os';
import path from 'node:path';
import { loadConfig } from '../config/load-config.js';
import { createDeferredLogger, type Logger } from '../config/logger.js';
import type { LoadedConfig } from '../config/novalet-config.js';
import { checkStateFolders } from '../config/state-folders.js';
import { checkConfiguredCpuNames } from '../hypervisor/cpu/guest-choice.js';

export interface CliConfigArgs {
  'config-file'?: string[];
  'config-dir'?: string[];
  debug?: boolean;
}

export interface CliConfigUse {
  /**
   * The command keeps state or uses libvirt (every command but `config show`,
   * which only prints the configuration, a bad state_path included): the
   * folders novalet writes in are checked (config/state-folders.ts) and
   * libvirt's log is routed below state_path.
   */
  state: boolean;
}

/** Loads the configuration named on the command line and makes the logger it asks for. */
export function loadCliConfig(args: CliConfigArgs, use: CliConfigUse = { state: true }): { loaded: LoadedConfig; log: Logger } {
  const loaded = loadConfig({ configFiles: args['config-file'], configDirs: args['config-dir'] });
  if (use.state) {
    // A CPU name libvirt does not know is bad configuration for every command that uses it, as nova's own rules are.
    checkConfiguredCpuNames(loaded, machine());
    // Before anything creates them: mkdir -p below /proc spins forever.
    checkStateFolders(loaded);
    routeLibvirtLog(loaded.values.DEFAULT.state_path);
  }
  const log = createDeferredLogger({ debug: Boolean(args.debug) || loaded.values.DEFAULT.debug });
  for (const item of loaded.ignored) {
    log.debug({ file: item.file, line: item.line, section: item.section, option: item.option }, 'ignoring an option novalet does not implement');
  }
  for (const item of loaded.deprecated) {
    log.warn(item, `option [${item.section}] ${item.usedName} is deprecated; use [${item.newSection}] ${item.name}`);
  }
  return { loaded, log };
}

/**
 * libvirt's own log (warnings and errors: its internal view of what novalet
 * already reports as typed errors) goes to <state_path>/libvirt.log rather
 * than over the command's output, unless the operator set LIBVIRT_LOG_OUTPUTS.
 * libvirt reads the variable when it is first used; every command reads its
 * configuration before that (and a relaunching parent never uses libvirt).
 */
function routeLibvirtLog(statePath: string): void {
  if (process.env.LIBVIRT_LOG_OUTPUTS !== undefined) return;
  try {
    mkdirSync(statePath, { recursive: true });
    process.env.LIBVIRT_LOG_OUTPUTS = `3:file:${path.join(statePath, 'libvirt.log')}`;
  } catch {
    // state_path not writable here: libvirt's errors only, on stderr.
    process.env.LIBVIRT_LOG_OUTPUTS = '4:stderr';
  }
}
