/**
 * `novalet compute` once the host is assembled: the service that consumes
 * `compute.<host>`, builds and manages instances on request, keeps the
 * schedulers told, and survives restarts of itself and of the broker
 * (docs/compute-service.md; docs/messages.md is the contract it keeps).
 *
 * Every request gets an answer: an event (kept on disk with the state it
 * reports until the broker confirms it: the outbox), a reply, or a dead
 * letter with the reason. A request is acknowledged only once its answer is
 * on disk (or confirmed), so a crash at any point loses nothing: the next
 * start finishes what was under way (agent/recovery.ts) and answers a
 * redelivered request again under the same ids.
 */
import type { Logger } from '../config/logger.js';
import type { NovaletConfig } from '../config/novalet-config.js';
import type { ComputeDriver, DriverInstance, LifecycleSubscription } from '../hypervisor/compute-driver.js';
import type { Broker, Delivery } from '../messaging/broker.js';
import type { HypervisorCapabilities, ServiceStatus } from '../messaging/contracts/capability-report.js';
import { COMPUTE_CALLS, validateComputeRequest, type ComputeRequest } from '../messaging/contracts/compute-requests.js';
import { decodeEnvelope } from '../messaging/envelope.js';
import { computeQueue } from '../messaging/topology.js';
import { ConsumerRunner } from '../service/consumer-runner.js';
import type { Outbox, OutboxMessage } from '../service/outbox.js';
import { aggregatesOf } from './aggregates.js';
import { BusPublisher } from './bus-publisher.js';
import { CapabilityReporter, type FullReportContent } from './capability-reporter.js';
import { ComputeCore } from './compute-core.js';
import type { ComputeInstances } from './compute-instances.js';
import { faultOf, notHere, wireFault } from './faults.js';
import type { InstanceRecord } from './instance-record.js';
import type { StoreLoad } from './instance-store.js';
import { instanceView, type InstanceView } from './instance-view.js';
import { watchLifecycle } from './lifecycle-watch.js';
import type { ServiceMetrics } from './metrics.js';
import { recoverInstances, type RecoveryResult } from './recovery.js';
import { isHostInstance, resourceView, type HostInventory } from './resources.js';

export interface ComputeServiceOptions {
  config: NovaletConfig;
  driver: ComputeDriver;
  broker: Broker;
  log: Logger;
  metrics: ServiceMetrics;
  /** What the hypervisor offers, gathered once at start-up. */
  capabilities: HypervisorCapabilities;
  /** `up`, or `disabled` with nova's `AUTO: …` reason when no instance can run here. */
  service: ServiceStatus;
  /** The host's totals (CPUs, memory, instances_path's file system). */
  inventory: () => Promise<HostInventory>;
}

/** How long stop() waits for a capability report under way. */
const REPORT_STOP_WAIT_MS = 5000;
/** How often deleted records past their retention are purged (and at start). */
const PURGE_EVERY_MS = 10 * 60_000;

export class ComputeService {
  readonly core: ComputeCore;
  readonly #publisher: BusPublisher;
  readonly #runner: ConsumerRunner;
  readonly #reporter: CapabilityReporter;
  #config: NovaletConfig;
  #lifecycle: LifecycleSubscription | null = null;
  #purgeTimer: NodeJS.Timeout | null = null;
  #unrecorded: DriverInstance[] = [];
  #recovery: RecoveryResult | null = null;
  /** SIGHUP applies report timing only while serving (see applyConfig). */
  #phase: 'starting' | 'serving' | 'stopping' = 'starting';

  constructor(private readonly options: ComputeServiceOptions) {
    const { config, driver, broker, log, metrics } = options;
    this.#config = config;
    const host = config.DEFAULT.host;
    this.#publisher = new BusPublisher(broker, host);
    this.#runner = new ConsumerRunner({
      broker,
      queue: computeQueue(host),
      prefetch: prefetchOf(config),
      log,
      handle: (delivery) => this.#handle(delivery),
      deadLetter: (delivery, code, reason) => this.#deadLetter(delivery, code, reason),
    });
    this.core = new ComputeCore({
      config: () => this.#config,
      driver,
      log,
      metrics,
      publisher: {
        publish: (m: OutboxMessage) => this.#publisher.outboxMessage(m),
        unroutable: (m: OutboxMessage, err) => this.#publisher.unroutable(m, err.message),
      },
      track: (work) => this.#runner.track(work),
      service: () => options.service,
      inventory: options.inventory,
      changed: () => void this.#reporter.changed(),
    });
    this.#reporter = new CapabilityReporter(() => this.#fullReportContent(), (report) => this.#publisher.report(report), log);
  }

  get compute(): ComputeInstances {
    return this.core.instances;
  }

  get outbox(): Outbox {
    return this.core.outbox;
  }

  get host(): string {
    return this.#config.DEFAULT.host;
  }

  get config(): NovaletConfig {
    return this.#config;
  }

  get consuming(): boolean {
    return this.#runner.consuming;
  }

  get recovery(): RecoveryResult | null {
    return this.#recovery;
  }

  get unrecorded(): readonly DriverInstance[] {
    return this.#unrecorded;
  }

  get reportsSent(): number {
    return this.#reporter.sent;
  }

  /** Reads the records and the outbox (once, at start): what was not confirmed before is published again. */
  async load(): Promise<StoreLoad> {
    const loaded = await this.core.load();
    this.options.metrics.setUnreadableRecords(loaded.unreadable.length);
    return loaded;
  }

  /** Reconciles records with libvirt's domains; interrupted builds start again once consuming. */
  async reconcile(): Promise<RecoveryResult> {
    this.#recovery = await recoverInstances(this.options.driver, this.compute, this.options.log);
    this.#unrecorded = this.#recovery.unrecorded;
    return this.#recovery;
  }

  /** Publishes the outbox, consumes `compute.<host>`, resumes interrupted builds, sends the first full report and starts the heartbeats. */
  async serve(): Promise<void> {
    const { broker, log, metrics } = this.options;
    this.#lifecycle = watchLifecycle(this.options.driver, this.compute, this.core.locks, log, (record) => {
      if (record.state === 'error') metrics.guestCrashed();
      void this.#reporter.changed();
    });
    broker.on('connected', (info: { reconnect: boolean }) => {
      metrics.setBrokerConnected(true);
      // What waited out the outage goes now, not after its backoff.
      this.outbox.retryNow();
      if (info.reconnect) {
        metrics.reconnected();
        // The schedulers may have lost track of us while we were away.
        void this.#reporter.full();
      }
    });
    broker.on('disconnected', () => metrics.setBrokerConnected(false));
    // Every dead letter of this connection, the broker layer's own (too large, a handler that threw) included.
    broker.on('dead-lettered', (code: string) => metrics.deadLettered(code));
    metrics.setBrokerConnected(broker.state === 'connected');
    this.outbox.start();
    // Interrupted builds are queued before requests are taken: a redelivered delete of one then finds it under way.
    for (const record of this.#recovery?.rebuild ?? []) this.core.builds.resume(record);
    await this.#runner.start();
    await this.#reporter.full();
    if (this.#phase === 'stopping') return;
    this.#phase = 'serving';
    this.#reporter.start(this.#config.DEFAULT.report_interval);
    await this.purge();
    this.#purgeTimer = setInterval(() => void this.purge(), PURGE_EVERY_MS);
    this.#purgeTimer.unref();
  }

  /**
   * SIGTERM: no new requests; what is under way gets `graceful_shutdown_timeout`
   * to finish; what has not finished by then is handed back (a build's
   * record stays BUILDING for the next start). Guests keep running; what the
   * outbox has not published stays on disk.
   */
  async stop(): Promise<{ finished: number; handedBack: number }> {
    this.#phase = 'stopping';
    this.#reporter.stop();
    this.#lifecycle?.();
    this.#lifecycle = null;
    if (this.#purgeTimer) clearInterval(this.#purgeTimer);
    const outcome = await this.#runner.stop(this.#config.DEFAULT.graceful_shutdown_timeout * 1000);
    // A report under way waits for the broker; with it away, the stop does not (reports are state: the next start sends a full one).
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.#reporter.settled(), new Promise((resolve) => (timer = setTimeout(resolve, REPORT_STOP_WAIT_MS)))]);
    clearTimeout(timer);
    await this.core.outbox.stop();
    await this.core.store.settle();
    return outcome;
  }

  /** SIGHUP: the options that may change at run time take their new values (agent/compute-assembly.ts's MUTABLE_OPTIONS). */
  applyConfig(next: NovaletConfig): void {
    this.#config = next;
    // Before serve() or once stopping, the new values are only kept: no heartbeats before the first full report, none after stop().
    if (this.#phase !== 'serving') return;
    this.#reporter.start(next.DEFAULT.report_interval);
    void this.#reporter.changed();
  }

  /** Deleted records past `[compute] deleted_record_retention`, purged. */
  async purge(): Promise<string[]> {
    const purged = await this.core.store.purge(this.#config.compute.deleted_record_retention * 1000).catch((err: unknown) => {
      this.options.log.warn({ err }, 'could not purge the records of deleted instances');
      return [];
    });
    if (purged.length > 0) this.options.log.info({ purged: purged.length }, 'records of instances deleted longer ago than [compute] deleted_record_retention were purged');
    return purged;
  }

  /** What makes the service degraded (still serving): unreadable records moved aside (INSTANCE_RECORD_CORRUPT), a full disk (DISK_FULL). */
  degraded(): { code: 'INSTANCE_RECORD_CORRUPT' | 'DISK_FULL'; reason: string }[] {
    const found: { code: 'INSTANCE_RECORD_CORRUPT' | 'DISK_FULL'; reason: string }[] = this.core.store.unreadable.map((u) => ({ code: 'INSTANCE_RECORD_CORRUPT', reason: `the instance record ${u.file} was unreadable (${u.reason}) and moved aside to ${u.movedTo}` }));
    const full = this.core.store.diskFull ?? this.core.builds.diskFull;
    if (full) found.push({ code: 'DISK_FULL' as const, reason: `a disk is full (since ${full.at}): ${full.message}` });
    return found;
  }

  degradedReasons(): string[] {
    return this.degraded().map((d) => d.reason);
  }

  /** The gauges read from the service's state: instances, the outbox, what degrades it (before each report and each scrape). */
  refreshMetrics(): void {
    const { metrics } = this.options;
    metrics.setInstances(countInstances(this.compute.list()));
    metrics.setOutboxPending(this.outbox.pending, this.outbox.oldestAgeSeconds());
    metrics.setDegraded([...new Set(this.degraded().map((d) => d.code))]);
  }

  instances(): InstanceView[] {
    return this.compute.list().filter(isHostInstance).map(instanceView);
  }

  instance(uuid: string): InstanceView | null {
    const record = this.compute.get(uuid);
    return record && isHostInstance(record) ? instanceView(record) : null;
  }

  /** The full report as it would be sent now (the HTTP API's /v1/host shows it). */
  reportNow(): Promise<FullReportContent> {
    return this.#fullReportContent();
  }

  // ------------------------------------------------------------ deliveries

  async #handle(delivery: Delivery): Promise<void> {
    // For 'instance built': receipt → running, what bench/compute-service.ts measures against libvirt's create.
    const receivedAt = performance.now();
    const decoded = decodeEnvelope(delivery.content, { maxBytes: this.#config.oslo_messaging_rabbit.max_message_size });
    const checked = decoded.ok ? validateComputeRequest(decoded.value) : decoded;
    if (!checked.ok) {
      await this.#deadLetter(delivery, checked.code, checked.reason);
      return;
    }
    const id = (decoded as { value: { id: string } }).value.id;
    const request = checked.value;
    await this.#dispatch(request, id, delivery, receivedAt);
  }

  async #dispatch(request: ComputeRequest, id: string, delivery: Delivery, receivedAt: number): Promise<void> {
    switch (request.kind) {
      case 'build':
        await this.core.builds.take(request.body, id, receivedAt);
        return;
      case 'delete':
      case 'stop':
      case 'start':
        await this.core.operations.run({ kind: request.kind, uuid: request.body.uuid }, id);
        return;
      case 'reboot':
        await this.core.operations.run({ kind: 'reboot', uuid: request.body.uuid, type: request.body.type }, id);
        return;
      default:
        break;
    }
    if (!COMPUTE_CALLS.includes(request.kind)) return;
    const replyTo = delivery.properties.replyTo;
    if (!replyTo || replyTo.length > 255) {
      await this.#deadLetter(delivery, 'REPLY_TO_MISSING', `A ${request.kind} is a call: it needs the AMQP property reply_to (a queue name of at most 255 bytes) for its answer; it came ${replyTo ? 'with one too long' : 'without one'}, so it was not run.`);
      return;
    }
    const answer = await this.#call(request).then(
      (result) => ({ ok: true as const, result }),
      (err: unknown) => ({ ok: false as const, error: wireFault(faultOf(err)) }),
    );
    await this.#publisher.reply(delivery, answer, id);
  }

  /** show, list, console: answered from the records in memory, never behind a build or an operation. */
  async #call(request: ComputeRequest): Promise<unknown> {
    switch (request.kind) {
      case 'list':
        return { instances: this.instances() };
      case 'show': {
        const view = this.instance(request.body.uuid);
        if (!view) throw notHere(request.body.uuid);
        return view;
      }
      case 'console': {
        if (!this.instance(request.body.uuid)) throw notHere(request.body.uuid);
        return { uuid: request.body.uuid, lines: await this.options.driver.consoleOutput(request.body.uuid, request.body.lines) };
      }
      default:
        throw new Error(`not a call: ${request.kind}`);
    }
  }

  async #deadLetter(delivery: Delivery, code: Parameters<BusPublisher['deadLetter']>[1], reason: string): Promise<void> {
    await this.#publisher.deadLetter(delivery, code, reason);
  }

  // --------------------------------------------------------------- reports

  async #fullReportContent(): Promise<FullReportContent> {
    const { capabilities, service, inventory } = this.options;
    const config = this.#config;
    const records = this.compute.list();
    const view = resourceView(await inventory(), records, config.DEFAULT);
    const instances = records.filter(isHostInstance).map((r) => ({ uuid: r.uuid, state: r.state }));
    const recorded = new Set(records.map((r) => r.uuid));
    const unrecorded = this.#unrecorded.filter((d) => !recorded.has(d.uuid));
    this.refreshMetrics();
    const { kvm, effective_virt_type, ...hypervisor } = capabilities;
    return {
      host: this.host,
      service,
      ...view,
      ...hypervisor,
      kvm,
      effective_virt_type,
      availability_zone: config.compute.availability_zone ?? config.DEFAULT.default_availability_zone,
      aggregates: aggregatesOf(config.compute.aggregates),
      instances,
      stats: { num_instances: instances.length, io_workload: this.core.slots.running, num_unrecorded_domains: unrecorded.length },
      ...(unrecorded.length > 0 ? { unrecorded_domains: unrecorded.map((d) => ({ uuid: d.uuid, power_state: d.state })) } : {}),
    };
  }
}

/** Prefetch: rabbit_qos_prefetch_count, or twice max_concurrent_builds (builds are taken on at once, so this bounds the operations under way). */
function prefetchOf(config: NovaletConfig): number {
  const configured = config.oslo_messaging_rabbit.rabbit_qos_prefetch_count;
  // max_concurrent_builds = 0 (no limit): no limit here either (0 to the broker).
  return configured > 0 ? configured : config.DEFAULT.max_concurrent_builds * 2;
}

function countInstances(records: readonly InstanceRecord[]): { state: string; virtType: string | null; count: number }[] {
  const counts = new Map<string, { state: string; virtType: string | null; count: number }>();
  for (const r of records.filter(isHostInstance)) {
    const key = `${r.state}/${r.virtType}`;
    const entry = counts.get(key) ?? { state: r.state, virtType: r.virtType, count: 0 };
    entry.count += 1;
    counts.set(key, entry);
  }
  return [...counts.values()];
}
