/**
 * The compute service put together and run (`novalet compute`; cli/compute.ts
 * only parses its arguments): one place assembles, values passed down.
 * Start-up, each step logged with its duration (service/startup-steps.ts):
 * the host (probe, libvirt connection, KVM self-test, verdict) → the
 * start-up CPU check → capabilities → the instance records and the outbox →
 * reconciling them with libvirt's domains → the HTTP API (token first) →
 * the broker → consuming `compute.<host>` and the first full report; then
 * READY=1 to systemd. A host that cannot run instances at all still starts,
 * and reports itself disabled with the reason.
 *
 * SIGTERM/SIGINT stop it (what is under way finishes or is handed back; the
 * guests keep running); SIGHUP re-reads the configuration and applies what
 * may change at run time (MUTABLE_OPTIONS), logging the rest as needing a restart.
 */
import { mkdir } from 'node:fs/promises';
import type { Logger } from '../config/logger.js';
import type { LoadedConfig, NovaletConfig } from '../config/novalet-config.js';
import { assembleComputeHost, type ComputeHost } from '../hypervisor/compute-host.js';
import { Broker } from '../messaging/broker.js';
import { brokerOptionsFrom } from '../messaging/broker-options.js';
import { loadApiToken } from '../service/api-token.js';
import { reloadConfig } from '../service/config-reload.js';
import { startHttpServer, type HttpServer } from '../service/http-server.js';
import { ServiceLifetime } from '../service/service-lifetime.js';
import { startupStep } from '../service/startup-steps.js';
import { createNotifier } from '../service/systemd-notify.js';
import { ComputeService } from './compute-service.js';
import { computeHostView, serviceHealth } from './host-view.js';
import { computeRoutes } from './http-routes.js';
import { ServiceMetrics } from './metrics.js';
import { hostInventory } from './resources.js';
import { serviceStatus } from './service-status.js';

/** What SIGHUP applies without a restart (oslo's mutable options): the log level, the report interval, the allocation ratios and the reserved resources. */
export const MUTABLE_OPTIONS = [
  'DEFAULT.debug',
  'DEFAULT.report_interval',
  'DEFAULT.cpu_allocation_ratio',
  'DEFAULT.ram_allocation_ratio',
  'DEFAULT.disk_allocation_ratio',
  'DEFAULT.reserved_host_memory_mb',
  'DEFAULT.reserved_host_disk_mb',
] as const;

export interface ComputeRun {
  /** The configuration as loaded at start. */
  loaded: LoadedConfig;
  /** Loads it again, from the same files (SIGHUP); throws on bad configuration. */
  reload: () => LoadedConfig;
  log: Logger;
  /** `--debug` on the command line: debug whatever the files say. */
  debug: boolean;
  /** performance.now() when the command started. */
  started: number;
}

/** Runs the compute service until SIGTERM or SIGINT: 0 stopped by a signal; a start-up step that fails throws StartupFailed (exit 1). */
export async function runComputeService(run: ComputeRun): Promise<number> {
  const { log, started } = run;
  let current = run.loaded;
  let config: NovaletConfig = current.values;
  let service: ComputeService | null = null;
  const lifetime = new ServiceLifetime(log, () => {
    const outcome = reloadConfig(current, run.reload(), MUTABLE_OPTIONS, log);
    current = outcome.effective;
    config = current.values;
    log.level = run.debug || config.DEFAULT.debug ? 'debug' : 'info';
    service?.applyConfig(config);
    log.info({ applied: outcome.applied.map((c) => c.option), needs_restart: outcome.ignored.map((c) => c.option) }, 'configuration reloaded');
  });
  const notifier = createNotifier(process.env, { log });
  const metrics = new ServiceMetrics();
  let host: ComputeHost | null = null;
  let broker: Broker | null = null;
  let api: HttpServer | null = null;
  let stopWatchdog = (): void => undefined;
  try {
    // Bad broker options are bad configuration: refused before anything starts.
    const brokerOptions = brokerOptionsFrom(config);
    // The resource report measures its file system from the start.
    await mkdir(config.DEFAULT.instances_path, { recursive: true });
    notifier.status('judging KVM on this host');
    const assembled = await startupStep(log, 'host: probe, libvirt connection, KVM self-test and verdict', () =>
      assembleComputeHost({ config, purpose: 'service', selfTest: 'run', signal: lifetime.signal, progress: (what) => log.info(what) }),
    );
    host = assembled;
    const judged = serviceStatus(assembled.virtType);
    log.info({ kvm: assembled.verdict, effective_virt_type: judged.effective, service: judged.status }, judged.reason);
    if (judged.effective !== null) {
      await startupStep(log, 'start-up CPU check', async () => {
        const cpu = await assembled.driver.guestCpu(judged.effective!, judged.fellBack);
        log.info({ guest_cpu: cpu.setting, substitution: cpu.substitution }, `instances get ${cpu.setting}`);
      });
    }
    const { cpu: _cpuDetail, ...capabilities } = await startupStep(log, 'capabilities', () => assembled.driver.hostCapabilities());
    metrics.setKvmVerdict(assembled.verdict.usable, judged.effective);
    // The compute host publishes reschedules to the schedulers' queue, so it declares it too (WIRE.md: every process declares what it uses).
    const activeBroker = new Broker(brokerOptions, log, { computeHost: config.DEFAULT.host, scheduler: true });
    broker = activeBroker;
    const running = new ComputeService({
      config,
      driver: assembled.driver,
      broker: activeBroker,
      log,
      metrics,
      capabilities,
      service: judged.status,
      inventory: () => hostInventory(config.DEFAULT.instances_path),
    });
    service = running;
    await startupStep(log, 'read the instance records and the outbox', () => running.load());
    const recovered = await startupStep(log, 'reconcile instance records with libvirt', () => running.reconcile());
    log.info(
      { rebuild: recovered.rebuild.map((r) => r.uuid), failed: recovered.failed, adopted: recovered.adopted.length, lost: recovered.lost, finished: recovered.finished, unrecorded: recovered.unrecorded.map((d) => d.uuid) },
      'instances reconciled',
    );
    const auth = await startupStep(log, 'HTTP API token', () => loadApiToken(config.api, log));
    api = await startupStep(log, `HTTP API on ${config.api.listen}:${config.api.port}`, () =>
      startHttpServer(
        {
          listen: config.api.listen,
          port: config.api.port,
          auth,
          log,
          health: () => serviceHealth(running, activeBroker, assembled),
          metrics: () => {
            running.refreshMetrics();
            return metrics.render();
          },
        },
        [
          computeRoutes({
            host: () => computeHostView(running, assembled, judged),
            instances: async () => running.instances(),
            instance: async (uuid) => running.instance(uuid),
            console: async (uuid, lines) => (running.instance(uuid) ? assembled.driver.consoleOutput(uuid, lines) : null),
          }),
        ],
      ),
    );
    notifier.status('connecting to the broker');
    await startupStep(log, 'broker connection', () => activeBroker.start(lifetime.signal));
    await startupStep(log, `consume compute.${config.DEFAULT.host} and send the first full report`, () => running.serve());
    log.info({ ms: Math.round(performance.now() - started), effective_virt_type: judged.effective, service: judged.status.state }, 'novalet compute is serving');
    notifier.ready(`serving compute.${config.DEFAULT.host}; instances run under ${judged.effective ?? 'nothing (disabled)'}`);
    stopWatchdog = notifier.startWatchdog();
    await lifetime.stopped();
    return 0;
  } catch (err) {
    if (lifetime.signal.aborted) return 0;
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
