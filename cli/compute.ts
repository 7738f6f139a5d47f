/**
 * `novalet compute`: parses its arguments and runs the compute service
 * (agent/compute-assembly.ts; docs/compute-service.md), in the foreground
 * until SIGTERM, as nova's cmd/compute.py starts nova-compute.
 */
import { loadConfig } from '../config/load-config.js';
import { createLogger } from '../config/logger.js';
import { NovaletError } from '../config/novalet-error.js';
import { printable } from '../config/quote-for-message.js';
import { runComputeService } from '../agent/compute-assembly.js';
import { StartupFailed } from '../service/startup-steps.js';
import { CliUsageError } from './cli-usage-error.js';
import { CONFIG_OPTIONS, parseCommandArgs } from './command-options.js';
import { loadCliConfig } from './load-cli-config.js';

const HELP = `usage: novalet compute [--config-file FILE]... [--config-dir DIR]... [--debug]

Runs the compute service in the foreground until SIGTERM (or SIGINT):
judges KVM on this host, consumes compute.<host> on RabbitMQ
([DEFAULT] transport_url), builds and manages instances on request,
sends capability reports every [DEFAULT] report_interval seconds, and
serves the HTTP API on [api] listen and port. Logs are JSON lines on
stdout. SIGHUP re-reads the configuration and applies the log level, the
report interval, the allocation ratios and the reserved resources (other
changes need a restart, and the log says which). On SIGTERM it stops
taking requests, lets those under way finish (up to [DEFAULT]
graceful_shutdown_timeout), hands back the rest, leaves the guests
running and exits 0.

Exit status: 0 stopped by a signal; 1 a start-up step failed (the log
says which and what to do); 2 bad arguments or configuration.`;

export async function runCompute(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs('compute', argv, CONFIG_OPTIONS);
  if (values.help) {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  if (positionals.length > 0) throw new CliUsageError(`compute: unexpected argument '${positionals[0]}'.`);
  const started = performance.now();
  const { loaded } = loadCliConfig(values);
  const debug = Boolean(values.debug);
  // journald takes stdout; the service has no other output.
  const log = createLogger({ debug: debug || loaded.values.DEFAULT.debug, destination: 1, name: 'novalet-compute' });
  log.info({ step: 'configuration', files: loaded.files, ms: Math.round(performance.now() - started) }, 'start-up: configuration done');
  try {
    return await runComputeService({ loaded, reload: () => loadConfig({ configFiles: values['config-file'], configDirs: values['config-dir'] }), log, debug, started });
  } catch (err) {
    if (err instanceof StartupFailed && err.causedBy instanceof NovaletError) {
      // Escaped as main.ts escapes every message: it may quote libvirt's words or a file's.
      process.stderr.write(`novalet compute: start-up step '${err.step}' failed: ${printable(err.causedBy.message)}\n`);
      return 1;
    }
    throw err instanceof StartupFailed ? err.causedBy : err;
  }
}
