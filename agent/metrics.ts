/**
 * The compute service's Prometheus metrics, on a prom-client registry of
 * its own (service/metrics.ts, which adds the process metrics): what GET
 * /metrics serves. Counters, gauges and one histogram; the methods say what
 * happened and the service calls them where it happens.
 */
import { Counter, Gauge, Histogram, serviceRegistry, type Registry } from '../service/metrics.js';

/** Upper bounds of novalet_build_duration_seconds: a TCG build with a download takes minutes, a cached KVM one a second. */
export const BUILD_DURATION_BUCKETS: readonly number[] = [0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300];

/** A duration as observed: a negative or non-finite one (a clock step, a bug) counts as 0 rather than spoiling the sum. */
function seconds(value: number): number {
  return Number.isFinite(value) && value > 0 ? value : 0;
}

/** A count as a gauge takes it: never negative, never NaN. */
function count(value: number): number {
  return Number.isFinite(value) && value > 0 ? value : 0;
}

export class ServiceMetrics {
  readonly registry: Registry;
  readonly #builds: Counter;
  readonly #buildSuccesses: Counter<'virt_type'>;
  readonly #buildFailures: Counter<'code'>;
  readonly #buildDuration: Histogram<'outcome'>;
  readonly #deletes: Counter;
  readonly #actionsFailed: Counter<'action' | 'code'>;
  readonly #guestCrashes: Counter;
  readonly #kvmUsable: Gauge;
  readonly #effectiveVirtType: Gauge<'virt_type'>;
  readonly #instances: Gauge<'state' | 'virt_type'>;
  readonly #brokerConnected: Gauge;
  readonly #brokerReconnects: Counter;
  readonly #deadLetters: Counter<'code'>;
  readonly #outboxPending: Gauge;
  readonly #outboxOldest: Gauge;
  readonly #outboxPublished: Counter;
  readonly #unreadableRecords: Gauge;
  readonly #degraded: Gauge<'reason'>;
  /** Every reason once reported: a reason that no longer holds is written 0, not dropped. */
  readonly #degradedReasons = new Set<string>();

  constructor(registry: Registry = serviceRegistry()) {
    this.registry = registry;
    const registers = [registry];
    this.#builds = new Counter({
      name: 'novalet_builds_total',
      help: 'Build requests this host received, refused ones included. Each ends once as a success or a failure, so novalet_build_failures_total never exceeds this.',
      registers,
    });
    this.#buildSuccesses = new Counter({ name: 'novalet_build_successes_total', help: 'Builds that ended ACTIVE, by the virt type the instance runs with.', labelNames: ['virt_type'], registers });
    this.#buildFailures = new Counter({ name: 'novalet_build_failures_total', help: "Builds that failed or were refused, by the fault's code.", labelNames: ['code'], registers });
    this.#buildDuration = new Histogram({
      name: 'novalet_build_duration_seconds',
      help: 'How long builds took, from the request to ACTIVE or the fault, by outcome.',
      labelNames: ['outcome'],
      buckets: [...BUILD_DURATION_BUCKETS],
      registers,
    });
    this.#deletes = new Counter({ name: 'novalet_deletes_total', help: 'Instances deleted on this host (delete.end sent).', registers });
    this.#actionsFailed = new Counter({
      name: 'novalet_actions_failed_total',
      help: 'Requests other than builds that could not be carried out (action.error sent), by action and fault code.',
      labelNames: ['action', 'code'],
      registers,
    });
    this.#guestCrashes = new Counter({ name: 'novalet_guest_crashes_total', help: 'Guests that crashed (their QEMU ended without being asked).', registers });
    this.#kvmUsable = new Gauge({ name: 'novalet_kvm_usable', help: 'Whether KVM is usable on this host by the KVM verdict (1) or not (0); 0 until the verdict is known.', registers });
    this.#effectiveVirtType = new Gauge({
      name: 'novalet_effective_virt_type',
      help: "The virt type this host's instances run with: 1 for the effective one, 0 for the other.",
      labelNames: ['virt_type'],
      registers,
    });
    this.#instances = new Gauge({ name: 'novalet_instances', help: 'Instances on this host, by state and virt type.', labelNames: ['state', 'virt_type'], registers });
    this.#brokerConnected = new Gauge({ name: 'novalet_broker_connected', help: 'Whether the service is connected to the message broker (1) or not (0).', registers });
    this.#brokerReconnects = new Counter({ name: 'novalet_broker_reconnects_total', help: 'Reconnections to the message broker after a lost connection.', registers });
    this.#deadLetters = new Counter({ name: 'novalet_dead_letters_total', help: 'Messages the service put on the dead-letter queue, by reason code.', labelNames: ['code'], registers });
    this.#outboxPending = new Gauge({ name: 'novalet_outbox_pending', help: 'Messages (instance events, reschedules) kept on disk and not yet confirmed by the broker.', registers });
    this.#outboxOldest = new Gauge({ name: 'novalet_outbox_oldest_seconds', help: 'Age of the oldest message waiting in the outbox (0 when none waits).', registers });
    this.#outboxPublished = new Counter({ name: 'novalet_outbox_published_total', help: 'Messages of the outbox the broker confirmed (or that were dead-lettered as unroutable).', registers });
    this.#unreadableRecords = new Gauge({ name: 'novalet_unreadable_records', help: 'Instance records that could not be read and were moved aside.', registers });
    this.#degraded = new Gauge({
      name: 'novalet_degraded',
      help: 'Why the service is degraded: 1 for each reason that holds now, 0 for one that held before and no longer does.',
      labelNames: ['reason'],
      registers,
    });
  }

  /** The Content-Type of render()'s text. */
  get contentType(): string {
    return this.registry.contentType;
  }

  /** A build request was received: call it for every one, a refused one included, before its outcome. */
  buildReceived(): void {
    this.#builds.inc();
  }

  buildSucceeded(duration: number, virtType: 'kvm' | 'qemu'): void {
    this.#buildSuccesses.inc({ virt_type: virtType });
    this.#buildDuration.observe({ outcome: 'succeeded' }, seconds(duration));
  }

  /** `code`: the fault's code (config/error-codes.ts or a KVM reason). A refused build is a failure too, with duration 0. */
  buildFailed(duration: number, code: string): void {
    this.#buildFailures.inc({ code });
    this.#buildDuration.observe({ outcome: 'failed' }, seconds(duration));
  }

  deleted(): void {
    this.#deletes.inc();
  }

  /** `action`: the request's method (stop, start, reboot, delete…); `code`: the fault's code. */
  actionFailed(action: string, code: string): void {
    this.#actionsFailed.inc({ action, code });
  }

  guestCrashed(): void {
    this.#guestCrashes.inc();
  }

  /** Both virt types are written, the effective one 1 and the other 0, so that a change shows as one series falling and one rising. */
  setKvmVerdict(usable: boolean, effectiveVirtType: 'kvm' | 'qemu' | null): void {
    this.#kvmUsable.set(usable ? 1 : 0);
    for (const virtType of ['kvm', 'qemu'] as const) this.#effectiveVirtType.set({ virt_type: virtType }, effectiveVirtType === virtType ? 1 : 0);
  }

  /** The whole count, replacing the last: a state no instance is in any more is no longer written. `virtType` null (not decided yet) is written "none". */
  setInstances(counts: { state: string; virtType: string | null; count: number }[]): void {
    this.#instances.reset();
    for (const entry of counts) this.#instances.inc({ state: entry.state, virt_type: entry.virtType ?? 'none' }, count(entry.count));
  }

  setBrokerConnected(connected: boolean): void {
    this.#brokerConnected.set(connected ? 1 : 0);
  }

  reconnected(): void {
    this.#brokerReconnects.inc();
  }

  deadLettered(code: string): void {
    this.#deadLetters.inc({ code });
  }

  /** `oldestAgeSeconds`: how long the oldest waiting entry has waited (0 when `pending` is 0). */
  setOutboxPending(pending: number, oldestAgeSeconds: number): void {
    this.#outboxPending.set(count(pending));
    this.#outboxOldest.set(count(pending) === 0 ? 0 : seconds(oldestAgeSeconds));
  }

  outboxPublished(): void {
    this.#outboxPublished.inc();
  }

  setUnreadableRecords(records: number): void {
    this.#unreadableRecords.set(count(records));
  }

  /** The reasons that hold now, each a short stable word (DISK_FULL, UNREADABLE_RECORDS), not a sentence: each is a label value. */
  setDegraded(reasons: string[]): void {
    const now = new Set(reasons);
    for (const reason of now) this.#degradedReasons.add(reason);
    for (const reason of this.#degradedReasons) this.#degraded.set({ reason }, now.has(reason) ? 1 : 0);
  }

  /** The Prometheus text exposition (format 0.0.4) of every metric, the process metrics included. */
  render(): Promise<string> {
    return this.registry.metrics();
  }
}
