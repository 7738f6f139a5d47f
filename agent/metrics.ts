/**
 * The compute service's Prometheus metrics, written as the text exposition
 * format 0.0.4 (what GET /metrics of agent/http-api.ts serves). The set is
 * small and fixed, so it is written here rather than taken from a client
 * library: counters, gauges and one histogram, each with HELP and TYPE,
 * label values escaped as the format requires.
 */

/** Upper bounds of novalet_build_duration_seconds: a TCG build with a download takes minutes, a cached KVM one a second. */
export const BUILD_DURATION_BUCKETS: readonly number[] = [0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300];

type Labels = Readonly<Record<string, string>>;

/** A label value as the exposition format writes it: backslash, double quote and line feed escaped. */
export function escapeLabelValue(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

/** HELP text as the format writes it: backslash and line feed escaped. */
function escapeHelp(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

/** A sample value: Go's float syntax, which the format takes (+Inf, -Inf, NaN spelt so). */
function formatValue(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (value === Infinity) return '+Inf';
  if (value === -Infinity) return '-Inf';
  return String(value);
}

function formatLabels(labels: Labels): string {
  const entries = Object.entries(labels);
  if (entries.length === 0) return '';
  return `{${entries.map(([name, value]) => `${name}="${escapeLabelValue(value)}"`).join(',')}}`;
}

/** Series of one metric family, keyed by their label set (in insertion order of the labels). */
class Series {
  private readonly values = new Map<string, { labels: Labels; value: number }>();

  private key(labels: Labels): string {
    return JSON.stringify(Object.entries(labels));
  }

  add(labels: Labels, by: number): void {
    const key = this.key(labels);
    const entry = this.values.get(key);
    if (entry) entry.value += by;
    else this.values.set(key, { labels, value: by });
  }

  set(labels: Labels, value: number): void {
    this.values.set(this.key(labels), { labels, value });
  }

  clear(): void {
    this.values.clear();
  }

  lines(name: string): string[] {
    return [...this.values.values()].map(({ labels, value }) => `${name}${formatLabels(labels)} ${formatValue(value)}`);
  }
}

class Histogram {
  private readonly byLabels = new Map<string, { labels: Labels; counts: number[]; sum: number; count: number }>();

  constructor(private readonly bounds: readonly number[]) {}

  observe(labels: Labels, value: number): void {
    const key = JSON.stringify(Object.entries(labels));
    let entry = this.byLabels.get(key);
    if (!entry) {
      entry = { labels, counts: this.bounds.map(() => 0), sum: 0, count: 0 };
      this.byLabels.set(key, entry);
    }
    // Per-bucket counts, made cumulative when written.
    const index = this.bounds.findIndex((bound) => value <= bound);
    if (index >= 0) entry.counts[index]! += 1;
    entry.sum += value;
    entry.count += 1;
  }

  lines(name: string): string[] {
    const out: string[] = [];
    for (const { labels, counts, sum, count } of this.byLabels.values()) {
      let cumulative = 0;
      this.bounds.forEach((bound, i) => {
        cumulative += counts[i]!;
        out.push(`${name}_bucket${formatLabels({ ...labels, le: formatValue(bound) })} ${cumulative}`);
      });
      out.push(`${name}_bucket${formatLabels({ ...labels, le: '+Inf' })} ${count}`);
      out.push(`${name}_sum${formatLabels(labels)} ${formatValue(sum)}`);
      out.push(`${name}_count${formatLabels(labels)} ${count}`);
    }
    return out;
  }
}

/** A duration as observed: a negative or non-finite one (a clock step, a bug) counts as 0 rather than spoiling the sum. */
function seconds(value: number): number {
  return Number.isFinite(value) && value > 0 ? value : 0;
}

export class ServiceMetrics {
  private readonly buildsStarted = new Series();
  private readonly buildSuccesses = new Series();
  private readonly buildFailures = new Series();
  private readonly buildDuration = new Histogram(BUILD_DURATION_BUCKETS);
  private readonly kvmUsable = new Series();
  private readonly effectiveVirtType = new Series();
  private readonly instances = new Series();
  private readonly brokerConnected = new Series();
  private readonly brokerReconnects = new Series();
  private readonly deadLetters = new Series();

  constructor() {
    // Counters without labels start at 0, so that rate() sees their first increase.
    this.buildsStarted.set({}, 0);
    this.brokerReconnects.set({}, 0);
    this.brokerConnected.set({}, 0);
  }

  buildReceived(): void {
    this.buildsStarted.add({}, 1);
  }

  // Interim (replaced by the prom-client metrics of the service kit).
  deleted(): void {}
  actionFailed(_action: string, _code: string): void {}
  guestCrashed(): void {}
  setOutboxPending(_n: number, _oldestSeconds: number): void {}
  outboxPublished(): void {}
  setUnreadableRecords(_n: number): void {}
  setDegraded(_reasons: string[]): void {}

  buildSucceeded(duration: number, virtType: 'kvm' | 'qemu'): void {
    this.buildSuccesses.add({ virt_type: virtType }, 1);
    this.buildDuration.observe({ outcome: 'succeeded' }, seconds(duration));
  }

  /** `code`: the fault's code (config/error-codes.ts or a KVM reason). */
  buildFailed(duration: number, code: string): void {
    this.buildFailures.add({ code }, 1);
    this.buildDuration.observe({ outcome: 'failed' }, seconds(duration));
  }

  /** Both virt types are written, the effective one 1 and the other 0, so that a change shows as one series falling and one rising. */
  setKvmVerdict(usable: boolean, effectiveVirtType: 'kvm' | 'qemu' | null): void {
    this.kvmUsable.set({}, usable ? 1 : 0);
    for (const virtType of ['kvm', 'qemu'] as const) this.effectiveVirtType.set({ virt_type: virtType }, effectiveVirtType === virtType ? 1 : 0);
  }

  /** The whole count, replacing the last: a state no instance is in any more is no longer written. `virtType` null (not decided yet) is written "none". */
  setInstances(counts: { state: string; virtType: string | null; count: number }[]): void {
    this.instances.clear();
    for (const { state, virtType, count } of counts) this.instances.add({ state, virt_type: virtType ?? 'none' }, count);
  }

  setBrokerConnected(connected: boolean): void {
    this.brokerConnected.set({}, connected ? 1 : 0);
  }

  reconnected(): void {
    this.brokerReconnects.add({}, 1);
  }

  deadLettered(code: string): void {
    this.deadLetters.add({ code }, 1);
  }

  render(): string {
    const families: [name: string, type: 'counter' | 'gauge' | 'histogram', help: string, lines: string[]][] = [
      ['novalet_builds_total', 'counter', 'Instance builds started on this host.', this.buildsStarted.lines('novalet_builds_total')],
      ['novalet_build_successes_total', 'counter', 'Instance builds that ended ACTIVE, by the virt type the instance runs with.', this.buildSuccesses.lines('novalet_build_successes_total')],
      ['novalet_build_failures_total', 'counter', "Instance builds that failed, by the fault's code.", this.buildFailures.lines('novalet_build_failures_total')],
      ['novalet_build_duration_seconds', 'histogram', 'How long builds took, from the request to ACTIVE or the fault, by outcome.', this.buildDuration.lines('novalet_build_duration_seconds')],
      ['novalet_kvm_usable', 'gauge', 'Whether KVM is usable on this host by the KVM verdict (1) or not (0).', this.kvmUsable.lines('novalet_kvm_usable')],
      ['novalet_effective_virt_type', 'gauge', "The virt type this host's instances run with: 1 for the effective one, 0 for the other.", this.effectiveVirtType.lines('novalet_effective_virt_type')],
      ['novalet_instances', 'gauge', 'Instances on this host, by state and virt type.', this.instances.lines('novalet_instances')],
      ['novalet_broker_connected', 'gauge', 'Whether the agent is connected to the message broker (1) or not (0).', this.brokerConnected.lines('novalet_broker_connected')],
      ['novalet_broker_reconnects_total', 'counter', 'Reconnections to the message broker after a lost connection.', this.brokerReconnects.lines('novalet_broker_reconnects_total')],
      ['novalet_dead_letters_total', 'counter', 'Messages the agent rejected to the dead-letter queue, by reason code.', this.deadLetters.lines('novalet_dead_letters_total')],
    ];
    const out: string[] = [];
    for (const [name, type, help, lines] of families) {
      out.push(`# HELP ${name} ${escapeHelp(help)}`, `# TYPE ${name} ${type}`, ...lines);
    }
    return `${out.join('\n')}\n`;
  }
}
