/**
 * `novalet compute`: the compute service, in the foreground until SIGTERM
 * (docs/compute-service.md). Start-up, each step logged with its duration:
 * configuration → host (probe, libvirt connection, KVM self-test, verdict)
 * → the start-up CPU check → reconciling records with libvirt's domains →
 * the HTTP API → the broker → consuming `compute.<host>` → the first full
 * report; then READY=1 to systemd. A host that cannot run instances at all
 * still starts, and reports itself disabled with the reason.
 */
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { createLogger } from '../config/logger.js';
import type { NovaletConfig } from '../config/novalet-config.js';
import { NovaletError } from '../config/novalet-error.js';
import { printable } from '../config/quote-for-message.js';
import { ComputeService } from '../agent/compute-service.js';
import { computeRoutes } from '../agent/http-routes.js';
import { ServiceMetrics } from '../agent/metrics.js';
import { hostInventory } from '../agent/resources.js';
import { loadApiToken } from '../service/api-token.js';
import { startHttpServer, type HttpServer } from '../service/http-server.js';
import { startupStep, StartupFailed } from '../service/startup-steps.js';
import { createNotifier } from '../service/systemd-notify.js';
import { assembleComputeHost, type ComputeHost } from '../hypervisor/compute-host.js';
import { Broker } from '../messaging/broker.js';
import { brokerOptionsFrom } from '../messaging/broker-options.js';
import { CliUsageError } from './cli-usage-error.js';
import { CommandLifetime } from './command-lifetime.js';
import { CONFIG_OPTIONS, parseCommandArgs } from './command-options.js';
import { loadCliConfig } from './load-cli-config.js';
import { computeHostView, serviceHealth } from './compute-host-view.js';
import { serviceStatus } from './compute-service-status.js';

const HELP = `usage: novalet compute [--config-file FILE]... [--config-dir DIR]... [--debug]

Runs the compute service in the foreground until SIGTERM (or SIGINT,
SIGHUP): judges KVM on this host, consumes compute.<host> on RabbitMQ
([DEFAULT] transport_url), builds and manages instances on request,
sends capability reports every [DEFAULT] report_interval seconds, and
serves the HTTP API on [api] listen and port. Logs are JSON lines on
stdout. On SIGTERM it stops taking requests, lets those under way finish
(up to [DEFAULT] graceful_shutdown_timeout), hands back the rest, leaves
the guests running and exits 0.

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
  const config = loaded.values;
  // journald takes stdout; the service has no other output.
  const log = createLogger({ debug: Boolean(values.debug) || config.DEFAULT.debug, destination: 1, name: 'novalet-compute' });
  log.info({ step: 'configuration', files: loaded.files, ms: Math.round(performance.now() - started) }, 'start-up: configuration done');
  const lifetime = new CommandLifetime();
  const notifier = createNotifier();
  const metrics = new ServiceMetrics();
  let host: ComputeHost | null = null;
  let broker: Broker | null = null;
  let api: HttpServer | null = null;
  let service: ComputeService | null = null;
  let stopWatchdog = (): void => undefined;
  try {
    // Bad broker options are bad configuration: refused before anything starts.
    const brokerOptions = brokerOptionsFrom(config);
    // The resource report measures its file system from the start.
    await mkdir(config.DEFAULT.instances_path, { recursive: true });
    notifier.status('judging KVM on this host');
    host = await startupStep(log, 'host: probe, libvirt connection, KVM self-test and verdict', () =>
      assembleComputeHost({ config, purpose: 'service', selfTest: 'run', signal: lifetime.signal, progress: (what) => log.info(what) }),
    );
    const judged = serviceStatus(host.virtType);
    log.info({ kvm: host.verdict, effective_virt_type: judged.effective, service: judged.status }, judged.reason);
    const assembled = host;
    if (judged.effective !== null) {
      await startupStep(log, 'start-up CPU check', async () => {
        const cpu = await assembled.driver.guestCpu(judged.effective!, judged.fellBack);
        log.info({ guest_cpu: cpu.setting, substitution: cpu.substitution }, `instances get ${cpu.setting}`);
      });
    }
    const capabilities = await startupStep(log, 'capabilities', () => assembled.driver.hostCapabilities());
    metrics.setKvmVerdict(host.verdict.usable, judged.effective);
    broker = new Broker(brokerOptions, log, { computeHost: config.DEFAULT.host });
    const { cpu: _cpuDetail, ...advertised } = capabilities;
    service = new ComputeService({
      config,
      driver: host.driver,
      broker,
      log,
      metrics,
      capabilities: advertised,
      service: judged.status,
      inventory: () => hostInventory(config.DEFAULT.instances_path),
    });
    const running = service;
    await startupStep(log, 'read the instance records and the outbox', () => running.load());
    const recovered = await startupStep(log, 'reconcile instance records with libvirt', () => running.reconcile());
    log.info(
      { rebuild: recovered.rebuild.map((r) => r.uuid), failed: recovered.failed, adopted: recovered.adopted.length, lost: recovered.lost, unrecorded: recovered.unrecorded.map((d) => d.uuid) },
      'instances reconciled',
    );
    const activeBroker = broker;
    const auth = await startupStep(log, 'HTTP API token', () => loadApiToken(config.api, log));
    api = await startupStep(log, `HTTP API on ${config.api.listen}:${config.api.port}`, () =>
      startHttpServer(
        {
          listen: config.api.listen,
          port: config.api.port,
          auth,
          log,
          health: () => serviceHealth(running, activeBroker, assembled),
          metrics: async () => metrics.render(),
        },
        [
          computeRoutes({
            host: () => computeHostView(running, assembled, judged),
            instances: async () => running.instances(),
            instance: async (uuid) => running.instance(uuid),
            console: async (uuid, lines) => ((await running.instance(uuid)) ? assembled.driver.consoleOutput(uuid, lines) : null),
          }),
        ],
      ),
    );
    notifier.status('connecting to the broker');
    await startupStep(log, 'broker connection', () => activeBroker.start(lifetime.signal));
    await startupStep(log, `consume ${`compute.${config.DEFAULT.host}`} and send the first full report`, () => running.serve());
    log.info({ ms: Math.round(performance.now() - started), effective_virt_type: judged.effective, service: judged.status.state }, 'novalet compute is serving');
    notifier.ready(`serving compute.${config.DEFAULT.host}; instances run under ${judged.effective ?? 'nothing (disabled)'}`);
    stopWatchdog = notifier.startWatchdog();
    await new Promise<void>((resolve) => {
      if (lifetime.signal.aborted) resolve();
      else lifetime.signal.addEventListener('abort', () => resolve(), { once: true });
    });
    return 0;
  } catch (err) {
    if (lifetime.signal.aborted) return 0;
    if (err instanceof StartupFailed) {
      const cause = err.causedBy;
      if (cause instanceof NovaletError) {
        // Escaped as main.ts escapes every message: it may quote libvirt's words or a file's.
        process.stderr.write(`novalet compute: start-up step '${err.step}' failed: ${printable(cause.message)}\n`);
        return 1;
      }
      throw cause;
    }
    throw err;
  } finally {
    const signal = lifetime.interrupted?.signal;
    if (signal) log.info({ signal }, `${signal}: stopping; guests keep running`);
    notifier.stopping('stopping: finishing the requests under way');
    stopWatchdog();
    if (service) {
      const outcome = await service.stop();
      log.info(outcome, 'requests under way finished or handed back');
    }
    await api?.close();
    await broker?.stop();
    await host?.close();
    lifetime.close();
    log.info('novalet compute stopped');
  }
}
