/**
 * `novalet compute` once the host is assembled: the service that consumes
 * `compute.<host>`, builds and manages instances on request, keeps the
 * schedulers told, and survives restarts of itself and of the broker
 * (docs/messages.md is the contract it keeps).
 *
 * Requests are acknowledged only once their effect is durable: a build when
 * its record is final (ACTIVE or ERROR) or handed back to the schedulers,
 * an operation when its record is written, a call when its reply is
 * confirmed. A build interrupted by a crash is finished by the next start
 * (agent/recovery.ts) and its redelivery is then a repeat, by instance UUID.
 */
import type { NovaletConfig } from '../config/novalet-config.js';
import type { Logger } from '../config/logger.js';
import { NovaletError } from '../config/novalet-error.js';
import { validateInstanceSpec, type ComputeDriver, type DriverInstance, type LifecycleSubscription, type ValidInstanceSpec } from '../hypervisor/compute-driver.js';
import type { Broker, ConsumerHandle, Delivery } from '../messaging/broker.js';
import type { HypervisorCapabilities, ServiceStatus } from '../messaging/contracts/capability-report.js';
import { COMPUTE_CALLS, validateComputeRequest, rescheduleBody, type BuildBody, type ComputeRequest } from '../messaging/contracts/compute-requests.js';
import type { Fault } from '../messaging/contracts/fault.js';
import type { InstanceEvent } from '../messaging/contracts/instance-event.js';
import { decodeEnvelope, type Envelope } from '../messaging/envelope.js';
import { computeQueue } from '../messaging/topology.js';
import { BuildSlots } from './build-slots.js';
import { instanceSpecOf } from './build-spec.js';
import { BusPublisher } from './bus-publisher.js';
import { CapabilityReporter, type FullReportContent } from './capability-reporter.js';
import { ComputeInstances, faultOf } from './compute-instances.js';
import type { InstanceFault, InstanceRecord } from './instance-record.js';
import type { InstanceStore } from './instance-store.js';
import { instanceView, type InstanceView } from './instance-view.js';
import { KeyedLock } from './keyed-lock.js';
import { watchLifecycle } from './lifecycle-watch.js';
import type { ServiceMetrics } from './metrics.js';
import { recoverInstances, type RecoveryResult } from './recovery.js';
import { claimRefusal, isHostInstance, resourceView, type HostInventory } from './resources.js';

export interface ComputeServiceOptions {
  config: NovaletConfig;
  driver: ComputeDriver;
  store: InstanceStore;
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

interface InFlight {
  delivery: Delivery | null;
  abort: AbortController;
  done: Promise<void>;
}

/** The reason an in-flight build's spawn is aborted at shutdown: the record stays BUILDING, the request goes back. */
class HandedBack extends Error {}

export class ComputeService {
  readonly compute: ComputeInstances;
  readonly #publisher: BusPublisher;
  readonly #locks = new KeyedLock();
  readonly #claims = new KeyedLock();
  readonly #slots: BuildSlots;
  readonly #reporter: CapabilityReporter;
  readonly #inFlight = new Set<InFlight>();
  #consumer: ConsumerHandle | null = null;
  #lifecycle: LifecycleSubscription | null = null;
  #stopping = false;
  #unrecorded: DriverInstance[] = [];
  #recovery: RecoveryResult | null = null;

  constructor(private readonly options: ComputeServiceOptions) {
    const { config, driver, store, broker, log } = options;
    this.compute = new ComputeInstances(driver, store, config.DEFAULT.host);
    this.#publisher = new BusPublisher(broker, config.DEFAULT.host);
    this.#slots = new BuildSlots(config.DEFAULT.max_concurrent_builds);
    this.#reporter = new CapabilityReporter(() => this.#fullReportContent(), (report) => this.#publisher.report(report), log);
  }

  get host(): string {
    return this.options.config.DEFAULT.host;
  }

  get consuming(): boolean {
    return this.#consumer !== null && !this.#stopping;
  }

  get recovery(): RecoveryResult | null {
    return this.#recovery;
  }

  /** Reconciles records with libvirt's domains; interrupted builds start again once consuming. */
  async reconcile(): Promise<RecoveryResult> {
    this.#recovery = await recoverInstances(this.options.driver, this.compute, this.options.log);
    this.#unrecorded = this.#recovery.unrecorded;
    return this.#recovery;
  }

  /** Consumes `compute.<host>`, restarts the interrupted builds, sends the first full report and starts the heartbeats. */
  async serve(): Promise<void> {
    const { config, broker, log, metrics } = this.options;
    this.#lifecycle = watchLifecycle(this.options.driver, this.compute, log, (record) => {
      void this.#event({ event: 'power.off', uuid: record.uuid, host: this.host, state: record.state });
      void this.#reporter.changed();
    });
    broker.on('connected', (info: { reconnect: boolean }) => {
      metrics.setBrokerConnected(true);
      if (info.reconnect) {
        metrics.reconnected();
        // The schedulers may have lost track of us while we were away.
        void this.#reporter.full();
      }
    });
    broker.on('disconnected', () => metrics.setBrokerConnected(false));
    metrics.setBrokerConnected(broker.state === 'connected');
    const configured = config.oslo_messaging_rabbit.rabbit_qos_prefetch_count;
    // Requests beyond what can run stay in the queue, for this host after a restart or for nobody lost.
    const prefetch = configured > 0 ? configured : config.DEFAULT.max_concurrent_builds * 2;
    this.#consumer = await broker.consume(computeQueue(this.host), (delivery: Delivery) => this.#track(delivery, (abort) => this.#handle(delivery, abort)), { prefetch });
    for (const record of this.#recovery?.rebuild ?? []) this.#track(null, (abort) => this.#rebuild(record, abort));
    await this.#reporter.full();
    this.#reporter.start(config.DEFAULT.report_interval);
  }

  /**
   * SIGTERM: no new requests; what is under way gets `graceful_shutdown_timeout`
   * to finish; what has not finished by then is handed back to the broker
   * (its build's record stays BUILDING for the next start). Guests keep running.
   */
  async stop(): Promise<{ finished: number; handedBack: number }> {
    if (this.#stopping) return { finished: 0, handedBack: 0 };
    this.#stopping = true;
    const { config, log } = this.options;
    this.#reporter.stop();
    this.#lifecycle?.();
    await this.#consumer?.cancel().catch((err: unknown) => log.warn({ err }, 'could not cancel the consumer'));
    const pending = [...this.#inFlight];
    const graceMs = config.DEFAULT.graceful_shutdown_timeout * 1000;
    const all = Promise.all(pending.map((p) => p.done));
    let timer: NodeJS.Timeout | undefined;
    const timedOut = graceMs === 0 ? new Promise<never>(() => undefined) : new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), graceMs)));
    const outcome = await Promise.race([all.then(() => 'done' as const), timedOut]);
    clearTimeout(timer);
    let handedBack = 0;
    if (outcome === 'timeout') {
      for (const p of this.#inFlight) {
        handedBack += 1;
        p.abort.abort(new HandedBack('the compute service is stopping'));
      }
      await Promise.all([...this.#inFlight].map((p) => p.done));
    }
    await this.#reporter.settled();
    return { finished: pending.length - handedBack, handedBack };
  }

  // ------------------------------------------------------------ deliveries

  #track(delivery: Delivery | null, work: (abort: AbortController) => Promise<void>): void {
    const abort = new AbortController();
    const entry: InFlight = { delivery, abort, done: Promise.resolve() };
    entry.done = (async () => {
      try {
        await work(abort);
      } catch (err) {
        if (err instanceof HandedBack || abort.signal.aborted) {
          delivery?.nack(true);
        } else if (delivery && !delivery.redelivered) {
          // A bug, not bad input: the request goes back for one more try rather than being lost.
          this.options.log.error({ err }, 'a request failed unexpectedly; it is handed back to the broker for one more try');
          delivery.nack(true);
        } else if (delivery) {
          // Failed twice: kept in novalet.dead for the operator, not retried for ever.
          this.options.log.error({ err }, 'a request failed unexpectedly again; it is moved to novalet.dead');
          this.options.metrics.deadLettered('HANDLER_FAILED');
          await this.#publisher.deadLetter(delivery, 'HANDLER_FAILED', `The compute host failed on it twice: ${err instanceof Error ? err.message : String(err)}`).then(
            () => delivery.ack(),
            () => delivery.nack(true),
          );
        } else {
          this.options.log.error({ err }, 'an interrupted build could not be finished');
        }
      } finally {
        this.#inFlight.delete(entry);
      }
    })();
    this.#inFlight.add(entry);
  }

  async #handle(delivery: Delivery, abort: AbortController): Promise<void> {
    // For 'instance built': receipt → running, what bench/compute-service.ts measures against libvirt's create.
    const receivedAt = performance.now();
    if (this.#stopping) {
      delivery.nack(true);
      return;
    }
    const { config, log, metrics } = this.options;
    const decoded = decodeEnvelope(delivery.content, { maxBytes: config.oslo_messaging_rabbit.max_message_size });
    const checked = decoded.ok ? validateComputeRequest(decoded.value) : decoded;
    if (!checked.ok) {
      log.warn({ code: checked.code, reason: checked.reason, routing_key: delivery.routingKey }, 'a message could not be handled: moved to novalet.dead');
      metrics.deadLettered(checked.code);
      await this.#publisher.deadLetter(delivery, checked.code, checked.reason);
      delivery.ack();
      return;
    }
    const envelope = decoded.ok ? decoded.value : null;
    const request = checked.value;
    if (request.kind === 'build') {
      await this.#build(request.body, envelope as Envelope, abort, receivedAt);
      delivery.ack();
      return;
    }
    const answer = await this.#operate(request).then(
      (result) => ({ ok: true as const, result }),
      (err: unknown) => ({ ok: false as const, error: faultOfError(err) }),
    );
    if (!answer.ok) log.warn({ kind: request.kind, uuid: 'uuid' in request.body ? request.body.uuid : undefined, code: answer.error.code }, answer.error.message);
    // Casts are not answered, reply_to or not (docs/messages.md).
    if (COMPUTE_CALLS.includes(request.kind)) await this.#publisher.reply(delivery, answer);
    delivery.ack();
  }

  async #operate(request: Exclude<ComputeRequest, { kind: 'build' }>): Promise<unknown> {
    const compute = this.compute;
    switch (request.kind) {
      case 'list':
        return { instances: (await compute.list()).filter(isHostInstance).map(instanceView) };
      case 'show': {
        const record = await compute.get(request.body.uuid);
        if (!record || !isHostInstance(record)) throw notHere(request.body.uuid);
        return instanceView(record);
      }
      case 'console': {
        const record = await compute.get(request.body.uuid);
        if (!record || !isHostInstance(record)) throw notHere(request.body.uuid);
        return { uuid: record.uuid, lines: await this.options.driver.consoleOutput(record.uuid, request.body.lines) };
      }
      default:
        break;
    }
    const { uuid } = request.body;
    return this.#locks.run(uuid, async () => {
      const timeoutMs = this.options.config.DEFAULT.shutdown_timeout * 1000;
      let record: InstanceRecord;
      switch (request.kind) {
        case 'delete':
          record = await compute.delete(uuid);
          await this.#event({ event: 'delete.end', uuid, host: this.host, state: record.state });
          break;
        case 'stop':
          record = await compute.stop(uuid, timeoutMs);
          await this.#event({ event: 'power.off', uuid, host: this.host, state: record.state });
          break;
        case 'start':
          record = await compute.start(uuid);
          await this.#event({ event: 'power.on', uuid, host: this.host, state: record.state });
          break;
        case 'reboot':
          record = await compute.reboot(uuid, request.body.type);
          await this.#event({ event: 'reboot.end', uuid, host: this.host, state: record.state, type: request.body.type, requested_type: request.body.type });
          break;
        default:
          throw new NovaletError('INTERNAL', `No handler for '${(request as { kind: string }).kind}'.`);
      }
      void this.#reporter.changed();
      return instanceView(record);
    });
  }

  // ---------------------------------------------------------------- builds

  async #build(body: BuildBody, envelope: Envelope, abort: AbortController, receivedAt: number): Promise<void> {
    const uuid = body.instance.uuid;
    await this.#locks.run(uuid, async () => {
      const origin = { messageId: envelope.id, body, rescheduledAt: null };
      const flavor = { rootGb: body.instance.flavor.root_gb, name: body.instance.flavor.name };
      const known = await this.compute.get(uuid);
      if (known && isRepeat(known, envelope.id)) {
        this.options.log.info({ uuid, message_id: envelope.id, state: known.state }, 'a repeated build: the instance is on record already, nothing is done');
        return;
      }
      let spec;
      try {
        spec = await instanceSpecOf(body, this.options.config.compute.image_dir);
      } catch (err) {
        await this.#refuse(body, faultOf(err), origin);
        return;
      }
      // One claim at a time: each sees the records of the builds claimed before it.
      type Claimed = { kind: 'repeat'; record: InstanceRecord } | { kind: 'refused'; fault: InstanceFault } | { kind: 'begun'; begun: Awaited<ReturnType<ComputeInstances['begin']>> };
      const claimed = await this.#claims.run('claims', async (): Promise<Claimed> => {
        const existing = await this.compute.get(uuid);
        if (existing && isRepeat(existing, envelope.id)) return { kind: 'repeat', record: existing };
        const view = resourceView(await this.options.inventory(), await this.compute.list(), this.options.config.DEFAULT);
        const refusal = this.options.service.state === 'disabled' ? disabledFault(this.options.service) : claimRefusal(view, { vcpus: spec.vcpus, memoryMb: spec.memoryMiB, rootGb: flavor.rootGb });
        if (refusal) return { kind: 'refused', fault: refusal };
        try {
          return { kind: 'begun', begun: await this.compute.begin(spec, { flavor, origin }) };
        } catch (err) {
          return { kind: 'refused', fault: faultOf(err) };
        }
      });
      if (claimed.kind === 'repeat') {
        this.options.log.info({ uuid, message_id: envelope.id, state: claimed.record.state }, 'a repeated build: the instance is on record already, nothing is done');
        return;
      }
      if (claimed.kind === 'refused') {
        await this.#refuse(body, claimed.fault, origin);
        return;
      }
      const { record, valid, started } = claimed.begun;
      if (!started) return;
      await this.#event({ event: 'create.start', uuid, host: this.host, state: 'building' });
      void this.#reporter.changed();
      await this.#finishBuild(record, valid, body, abort, receivedAt);
    });
  }

  /** Builds again, from its record, a build a crash interrupted (recovery). */
  async #rebuild(record: InstanceRecord, abort: AbortController): Promise<void> {
    const body = record.origin?.body as BuildBody;
    await this.#locks.run(record.uuid, async () => {
      let valid;
      try {
        valid = validateInstanceSpec(await instanceSpecOf(body, this.options.config.compute.image_dir));
      } catch (err) {
        const failed = await this.compute.failBuild(record, faultOf(err));
        await this.#buildFailed(failed, body);
        return;
      }
      this.options.log.info({ uuid: record.uuid }, 'building again an instance whose build a restart interrupted');
      await this.#finishBuild(record, valid, body, abort);
    });
  }

  /** `receivedAt`: when this process received the request (performance.now()); null for a build a restart interrupted. */
  async #finishBuild(record: InstanceRecord, valid: ValidInstanceSpec, body: BuildBody, abort: AbortController, receivedAt: number | null = null): Promise<void> {
    const { metrics, log } = this.options;
    const started = performance.now();
    metrics.buildReceived();
    const done = await this.#slots.run(() => {
      if (abort.signal.aborted) throw abort.signal.reason;
      return this.compute.complete(record, valid, { signal: abort.signal });
    });
    const seconds = (performance.now() - started) / 1000;
    if (done.state === 'active') {
      metrics.buildSucceeded(seconds, done.virtType ?? 'qemu');
      const received = receivedAt === null ? {} : { received_to_running_ms: Math.round(performance.now() - receivedAt) };
      log.info({ uuid: done.uuid, virt_type: done.virtType, seconds: Number(seconds.toFixed(3)), ...received }, 'instance built');
      await this.#event({ event: 'create.end', uuid: done.uuid, host: this.host, state: 'active', virt_type: done.virtType ?? 'qemu', virt_type_reason: done.virtTypeReason ?? '' });
      void this.#reporter.changed();
      return;
    }
    metrics.buildFailed(seconds, done.fault?.code ?? 'INTERNAL');
    await this.#buildFailed(done, body);
  }

  /** A build that failed here: `create.error`, and a placed build goes back to the schedulers with the fault. */
  async #buildFailed(record: InstanceRecord, body: BuildBody): Promise<void> {
    const fault = wireFault(record.fault);
    const placed = body.request !== undefined;
    this.options.log.warn({ uuid: record.uuid, code: fault.code, placed }, `build failed: ${fault.message}`);
    if (placed) {
      await this.#publisher.reschedule(rescheduleBody(body, { host: this.host, ...fault }));
      await this.compute.handedBack(record);
    }
    const retry = willRetry(body);
    await this.#event({ event: 'create.error', uuid: record.uuid, host: this.host, state: retry ? 'building' : 'error', fault, will_retry: retry });
    void this.#reporter.changed();
  }

  /** A build refused before anything was touched: recorded ERROR for a direct build, handed back for a placed one. */
  async #refuse(body: BuildBody, fault: InstanceFault, origin: NonNullable<InstanceRecord['origin']>): Promise<void> {
    const placed = body.request !== undefined;
    const wire = wireFault(fault);
    this.options.log.warn({ uuid: body.instance.uuid, code: wire.code, placed }, `build refused: ${wire.message}`);
    if (placed) {
      await this.#publisher.reschedule(rescheduleBody(body, { host: this.host, ...wire }));
    } else {
      const { instance } = body;
      const refusedBuild = { uuid: instance.uuid, name: instance.name, vcpus: instance.flavor.vcpus, memoryMiB: instance.flavor.memory_mb, rootGb: instance.flavor.root_gb, flavorName: instance.flavor.name };
      await this.compute.refused(refusedBuild, fault, origin).catch((err: unknown) => this.options.log.warn({ err, uuid: instance.uuid }, 'could not record a refused build'));
    }
    const retry = willRetry(body);
    await this.#event({ event: 'create.error', uuid: body.instance.uuid, host: this.host, state: retry ? 'building' : 'error', fault: wire, will_retry: retry });
    this.options.metrics.buildFailed(0, wire.code);
  }

  async #event(event: InstanceEvent): Promise<void> {
    try {
      await this.#publisher.event(event);
    } catch (err) {
      this.options.log.warn({ err, uuid: event.uuid, event: event.event }, 'could not send an instance event');
    }
  }

  // --------------------------------------------------------------- reports

  async #fullReportContent(): Promise<FullReportContent> {
    const { config, capabilities, service, inventory, metrics } = this.options;
    const records = await this.compute.list();
    const view = resourceView(await inventory(), records, config.DEFAULT);
    const instances = records.filter(isHostInstance).map((r) => ({ uuid: r.uuid, state: r.state }));
    const recorded = new Set(records.map((r) => r.uuid));
    const unrecorded = this.#unrecorded.filter((d) => !recorded.has(d.uuid));
    metrics.setInstances(countInstances(records));
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
      stats: { num_instances: instances.length, io_workload: this.#slots.running, num_unrecorded_domains: unrecorded.length },
      ...(unrecorded.length > 0 ? { unrecorded_domains: unrecorded.map((d) => ({ uuid: d.uuid, power_state: d.state })) } : {}),
    };
  }

  /** The full report as it would be sent now (the HTTP API's /v1/host shows it). */
  reportNow(): Promise<FullReportContent> {
    return this.#fullReportContent();
  }

  get reportsSent(): number {
    return this.#reporter.sent;
  }

  get unrecorded(): readonly DriverInstance[] {
    return this.#unrecorded;
  }

  async instances(): Promise<InstanceView[]> {
    return (await this.compute.list()).filter(isHostInstance).map(instanceView);
  }

  async instance(uuid: string): Promise<InstanceView | null> {
    const record = await this.compute.get(uuid);
    return record && isHostInstance(record) ? instanceView(record) : null;
  }
}

function isRepeat(existing: InstanceRecord, messageId: string): boolean {
  if (existing.state === 'deleted') return existing.origin?.messageId === messageId;
  if (existing.origin?.rescheduledAt) return existing.origin.messageId === messageId;
  return true;
}

function willRetry(body: BuildBody): boolean {
  return body.request !== undefined && body.request.attempt < body.request.max_attempts;
}

function notHere(uuid: string): NovaletError {
  return new NovaletError('INSTANCE_NOT_FOUND', `No instance ${uuid} is on this host.`, 'Check the UUID against the instances this host reports.');
}

function disabledFault(service: ServiceStatus): InstanceFault {
  return {
    code: 'HOST_DISABLED',
    message: `This host does not take builds: ${service.disabled_reason ?? 'it is disabled'}.`,
    remedy: 'Build on another host, or make KVM usable here or set [libvirt] fallback_virt_type = qemu.',
    at: new Date().toISOString(),
  };
}

function wireFault(fault: InstanceFault | null): Fault {
  if (!fault) return { code: 'INTERNAL', message: 'The build failed without a fault on record.', remedy: 'Look at the compute service log.' };
  return { code: fault.code, message: fault.message, remedy: fault.remedy ?? '' };
}

function faultOfError(err: unknown): Fault {
  return wireFault(faultOf(err));
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

/** `[compute] aggregates` items, `name` or `name/key=value`, as the report's `aggregates`. */
export function aggregatesOf(items: readonly string[]): { name: string; metadata: Record<string, string> }[] {
  const byName = new Map<string, Record<string, string>>();
  for (const item of items) {
    const slash = item.indexOf('/');
    const name = slash < 0 ? item : item.slice(0, slash);
    const metadata = byName.get(name) ?? {};
    if (slash >= 0) {
      const pair = item.slice(slash + 1);
      const eq = pair.indexOf('=');
      if (eq <= 0) {
        throw new NovaletError('CONFIG_INVALID_VALUE', `[compute] aggregates item '${item}' is not name or name/key=value.`, 'Write each item as an aggregate name, or name/key=value for a metadata key.');
      }
      metadata[pair.slice(0, eq)] = pair.slice(eq + 1);
    }
    byName.set(name, metadata);
  }
  return [...byName].map(([name, metadata]) => ({ name, metadata }));
}
