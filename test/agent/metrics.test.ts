/**
 * agent/metrics.ts: the text it renders is read back by a strict parser of
 * the Prometheus text exposition format 0.0.4 (every line in the grammar,
 * HELP and TYPE once and before their samples, a family's samples together,
 * no series twice, label values unescaped as written, histograms cumulative
 * up to +Inf = _count), and says what happened.
 */
import { describe, expect, it } from 'vitest';
import { BUILD_DURATION_BUCKETS, escapeLabelValue, ServiceMetrics } from '../../agent/metrics.js';

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}
interface Family {
  name: string;
  type: string;
  help: string;
  samples: Sample[];
}

const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*';
const LABEL_NAME = '[a-zA-Z_][a-zA-Z0-9_]*';
const LABEL_VALUE = '"(?:[^"\\\\\\n]|\\\\[\\\\"n])*"';
const VALUE = '(?:[+-]?(?:[0-9]+(?:\\.[0-9]*)?|\\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]Inf|NaN)';
const SAMPLE = new RegExp(`^(${NAME})(?:\\{((?:${LABEL_NAME}=${LABEL_VALUE})(?:,${LABEL_NAME}=${LABEL_VALUE})*)?\\})? (${VALUE})(?: -?[0-9]+)?$`);
const LABEL = new RegExp(`(${LABEL_NAME})=(${LABEL_VALUE})`, 'g');
const HELP = new RegExp(`^# HELP (${NAME}) ((?:[^\\\\\\n]|\\\\[\\\\n])*)$`);
const TYPE = new RegExp(`^# TYPE (${NAME}) (counter|gauge|histogram|summary|untyped)$`);

function unescape(quoted: string): string {
  return quoted.slice(1, -1).replace(/\\(["\\n])/g, (_m, c: string) => (c === 'n' ? '\n' : c));
}

function parseValue(text: string): number {
  if (text === '+Inf') return Infinity;
  if (text === '-Inf') return -Infinity;
  return Number(text);
}

/** Which family a sample name belongs to, given the families' types. */
function familyOf(name: string, families: Map<string, Family>): Family | undefined {
  const direct = families.get(name);
  if (direct) return direct;
  const match = /^(.*)_(bucket|sum|count)$/.exec(name);
  const base = match ? families.get(match[1]!) : undefined;
  return base && (base.type === 'histogram' || base.type === 'summary') ? base : undefined;
}

/** A strict reading of the exposition: throws on the first line that breaks a rule. */
function parseExposition(text: string): Map<string, Family> {
  if (!text.endsWith('\n')) throw new Error('the exposition must end with a line feed');
  const families = new Map<string, Family>();
  const seen = new Set<string>();
  const finished = new Set<string>();
  let current: Family | null = null;
  for (const [index, line] of text.slice(0, -1).split('\n').entries()) {
    const where = `line ${index + 1}: ${JSON.stringify(line)}`;
    const help = HELP.exec(line);
    const type = TYPE.exec(line);
    if (help || type) {
      const name = (help ?? type)![1]!;
      if (finished.has(name)) throw new Error(`${where}: family ${name} appears twice`);
      let family = families.get(name);
      if (!family) {
        if (current) finished.add(current.name);
        family = { name, type: 'untyped', help: '', samples: [] };
        families.set(name, family);
        current = family;
      }
      if (family !== current) throw new Error(`${where}: metadata of ${name} among another family's lines`);
      if (family.samples.length > 0) throw new Error(`${where}: HELP/TYPE after samples`);
      if (help) {
        if (family.help) throw new Error(`${where}: second HELP`);
        family.help = help[2]!;
      } else {
        if (family.type !== 'untyped') throw new Error(`${where}: second TYPE`);
        family.type = type![2]!;
      }
      continue;
    }
    if (line.startsWith('#')) continue;
    const sample = SAMPLE.exec(line);
    if (!sample) throw new Error(`${where}: not a sample line`);
    const family = familyOf(sample[1]!, families);
    if (!family || family !== current) throw new Error(`${where}: sample outside its family's block`);
    const labels: Record<string, string> = {};
    for (const label of (sample[2] ?? '').matchAll(LABEL)) {
      if (label[1]! in labels) throw new Error(`${where}: label ${label[1]} twice`);
      labels[label[1]!] = unescape(label[2]!);
    }
    const key = `${sample[1]}${JSON.stringify(Object.entries(labels).sort())}`;
    if (seen.has(key)) throw new Error(`${where}: series twice`);
    seen.add(key);
    family.samples.push({ name: sample[1]!, labels, value: parseValue(sample[3]!) });
  }
  for (const family of families.values()) {
    if (!family.help || family.type === 'untyped') throw new Error(`${family.name}: no HELP or TYPE`);
    if (family.type === 'counter' && !family.name.endsWith('_total')) throw new Error(`${family.name}: a counter not named _total`);
    if (family.type === 'histogram') checkHistogram(family);
  }
  return families;
}

function checkHistogram(family: Family): void {
  const groups = new Map<string, Sample[]>();
  for (const sample of family.samples) {
    const { le: _le, ...rest } = sample.labels;
    const key = JSON.stringify(Object.entries(rest).sort());
    groups.set(key, [...(groups.get(key) ?? []), sample]);
  }
  for (const [key, samples] of groups) {
    const buckets = samples.filter((s) => s.name === `${family.name}_bucket`);
    const count = samples.find((s) => s.name === `${family.name}_count`);
    const sum = samples.find((s) => s.name === `${family.name}_sum`);
    if (!count || !sum || buckets.length === 0) throw new Error(`${family.name}${key}: buckets, _sum and _count are required`);
    let lastBound = -Infinity;
    let lastCount = 0;
    for (const bucket of buckets) {
      if (bucket.labels.le === undefined) throw new Error(`${family.name}${key}: a bucket without le`);
      const bound = parseValue(bucket.labels.le);
      if (!(bound > lastBound)) throw new Error(`${family.name}${key}: le not increasing at ${bucket.labels.le}`);
      if (bucket.value < lastCount) throw new Error(`${family.name}${key}: buckets not cumulative at le=${bucket.labels.le}`);
      lastBound = bound;
      lastCount = bucket.value;
    }
    if (lastBound !== Infinity) throw new Error(`${family.name}${key}: the last bucket is not +Inf`);
    if (lastCount !== count.value) throw new Error(`${family.name}${key}: +Inf bucket ${lastCount} is not _count ${count.value}`);
  }
}

const value = (families: Map<string, Family>, name: string, labels: Record<string, string> = {}): number | undefined => {
  const family = familyOf(name, families);
  return family?.samples.find((s) => s.name === name && JSON.stringify(Object.entries(s.labels).sort()) === JSON.stringify(Object.entries(labels).sort()))?.value;
};

const NAMES = [
  'novalet_builds_total',
  'novalet_build_successes_total',
  'novalet_build_failures_total',
  'novalet_build_duration_seconds',
  'novalet_kvm_usable',
  'novalet_effective_virt_type',
  'novalet_instances',
  'novalet_broker_connected',
  'novalet_broker_reconnects_total',
  'novalet_dead_letters_total',
];

describe('the strict exposition parser of this test', () => {
  it('refuses what breaks the format (so the checks below can fail)', () => {
    const ok = '# HELP a_total A.\n# TYPE a_total counter\na_total 1\n';
    expect(() => parseExposition(ok)).not.toThrow();
    for (const bad of [
      'a_total 1\n', // no HELP/TYPE
      '# HELP a_total A.\n# TYPE a_total counter\na_total 1', // no final line feed
      '# HELP a_total A.\n# TYPE a_total counter\na_total{code="x\ny"} 1\n', // raw line feed in a label value
      '# HELP a_total A.\n# TYPE a_total counter\na_total{code="x"y"} 1\n', // raw quote
      '# HELP a_total A.\n# TYPE a_total counter\na_total{code="a\\tb"} 1\n', // an escape the format does not have
      '# HELP a_total A.\n# TYPE a_total counter\na_total one\n',
      '# HELP a_total A.\n# TYPE a_total counter\na_total 1\na_total 2\n', // series twice
      '# HELP h A.\n# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n', // not cumulative
      '# HELP h A.\n# TYPE h histogram\nh_bucket{le="1"} 1\nh_bucket{le="+Inf"} 2\nh_sum 1\nh_count 3\n', // +Inf != count
      '# HELP h A.\n# TYPE h histogram\nh_bucket{le="1"} 1\nh_sum 1\nh_count 1\n', // no +Inf
    ]) {
      expect(() => parseExposition(bad), bad).toThrow();
    }
  });
});

describe('ServiceMetrics', () => {
  it('renders every family with HELP and TYPE before anything happened, in the format', () => {
    const families = parseExposition(new ServiceMetrics().render());
    expect([...families.keys()]).toEqual(NAMES);
    expect(families.get('novalet_build_duration_seconds')!.type).toBe('histogram');
    expect(families.get('novalet_kvm_usable')!.type).toBe('gauge');
    expect(families.get('novalet_dead_letters_total')!.type).toBe('counter');
    expect(value(families, 'novalet_builds_total')).toBe(0);
    expect(value(families, 'novalet_broker_reconnects_total')).toBe(0);
    // Not known yet: no sample rather than a guess.
    expect(families.get('novalet_kvm_usable')!.samples).toEqual([]);
  });

  it('counts builds, their successes by virt type and failures by code', () => {
    const metrics = new ServiceMetrics();
    for (let i = 0; i < 4; i++) metrics.buildReceived();
    metrics.buildSucceeded(1.5, 'qemu');
    metrics.buildSucceeded(0.7, 'qemu');
    metrics.buildFailed(3, 'IMAGE_CHECKSUM_MISMATCH');
    metrics.buildFailed(0.1, 'KVM_UNAVAILABLE');
    const families = parseExposition(metrics.render());
    expect(value(families, 'novalet_builds_total')).toBe(4);
    expect(value(families, 'novalet_build_successes_total', { virt_type: 'qemu' })).toBe(2);
    expect(value(families, 'novalet_build_successes_total', { virt_type: 'kvm' })).toBeUndefined();
    expect(value(families, 'novalet_build_failures_total', { code: 'IMAGE_CHECKSUM_MISMATCH' })).toBe(1);
    expect(value(families, 'novalet_build_failures_total', { code: 'KVM_UNAVAILABLE' })).toBe(1);
  });

  it('puts build durations in cumulative buckets (upper bounds inclusive), with _sum and _count, by outcome', () => {
    const metrics = new ServiceMetrics();
    for (const seconds of [0.1, 0.25, 0.3, 3, 400]) metrics.buildSucceeded(seconds, 'kvm');
    metrics.buildFailed(45, 'INTERNAL');
    const families = parseExposition(metrics.render());
    const bucket = (le: string, outcome = 'succeeded') => value(families, 'novalet_build_duration_seconds_bucket', { outcome, le });
    expect(BUILD_DURATION_BUCKETS).toEqual([0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300]);
    expect([bucket('0.25'), bucket('0.5'), bucket('1'), bucket('2'), bucket('5'), bucket('300'), bucket('+Inf')]).toEqual([2, 3, 3, 3, 4, 4, 5]);
    expect(value(families, 'novalet_build_duration_seconds_count', { outcome: 'succeeded' })).toBe(5);
    expect(value(families, 'novalet_build_duration_seconds_sum', { outcome: 'succeeded' })).toBeCloseTo(403.65, 9);
    expect([bucket('30', 'failed'), bucket('60', 'failed'), bucket('+Inf', 'failed')]).toEqual([0, 1, 1]);
  });

  it('counts a negative or non-finite duration as 0 rather than spoiling the sum', () => {
    const metrics = new ServiceMetrics();
    metrics.buildSucceeded(-2, 'kvm');
    metrics.buildSucceeded(Number.NaN, 'kvm');
    metrics.buildSucceeded(Infinity, 'kvm');
    const families = parseExposition(metrics.render());
    expect(value(families, 'novalet_build_duration_seconds_sum', { outcome: 'succeeded' })).toBe(0);
    expect(value(families, 'novalet_build_duration_seconds_bucket', { outcome: 'succeeded', le: '0.25' })).toBe(3);
  });

  it('gauges the KVM verdict and the effective virt type, both virt types written', () => {
    const metrics = new ServiceMetrics();
    metrics.setKvmVerdict(true, 'kvm');
    let families = parseExposition(metrics.render());
    expect(value(families, 'novalet_kvm_usable')).toBe(1);
    expect(value(families, 'novalet_effective_virt_type', { virt_type: 'kvm' })).toBe(1);
    expect(value(families, 'novalet_effective_virt_type', { virt_type: 'qemu' })).toBe(0);
    metrics.setKvmVerdict(false, 'qemu');
    families = parseExposition(metrics.render());
    expect(value(families, 'novalet_kvm_usable')).toBe(0);
    expect(value(families, 'novalet_effective_virt_type', { virt_type: 'kvm' })).toBe(0);
    expect(value(families, 'novalet_effective_virt_type', { virt_type: 'qemu' })).toBe(1);
    metrics.setKvmVerdict(false, null);
    families = parseExposition(metrics.render());
    expect(families.get('novalet_effective_virt_type')!.samples.map((s) => s.value)).toEqual([0, 0]);
  });

  it('gauges instances by state and virt type, each count replacing the last', () => {
    const metrics = new ServiceMetrics();
    metrics.setInstances([
      { state: 'active', virtType: 'qemu', count: 3 },
      { state: 'building', virtType: null, count: 1 },
    ]);
    let families = parseExposition(metrics.render());
    expect(value(families, 'novalet_instances', { state: 'active', virt_type: 'qemu' })).toBe(3);
    expect(value(families, 'novalet_instances', { state: 'building', virt_type: 'none' })).toBe(1);
    metrics.setInstances([{ state: 'active', virtType: 'qemu', count: 4 }]);
    families = parseExposition(metrics.render());
    expect(families.get('novalet_instances')!.samples).toEqual([{ name: 'novalet_instances', labels: { state: 'active', virt_type: 'qemu' }, value: 4 }]);
  });

  it('gauges the broker connection and counts reconnects and dead letters by code', () => {
    const metrics = new ServiceMetrics();
    metrics.setBrokerConnected(true);
    metrics.setBrokerConnected(false);
    metrics.reconnected();
    metrics.reconnected();
    metrics.setBrokerConnected(true);
    metrics.deadLettered('MESSAGE_INVALID');
    metrics.deadLettered('MESSAGE_INVALID');
    const families = parseExposition(metrics.render());
    expect(value(families, 'novalet_broker_connected')).toBe(1);
    expect(value(families, 'novalet_broker_reconnects_total')).toBe(2);
    expect(value(families, 'novalet_dead_letters_total', { code: 'MESSAGE_INVALID' })).toBe(2);
  });

  it('escapes label values as the format requires, and they read back unchanged', () => {
    const weird = 'a\\b"c\nd';
    expect(escapeLabelValue(weird)).toBe('a\\\\b\\"c\\nd');
    const metrics = new ServiceMetrics();
    metrics.deadLettered(weird);
    metrics.buildFailed(1, 'x"}\n# TYPE evil counter');
    metrics.setInstances([{ state: 'active\\', virtType: '"kvm"', count: 1 }]);
    const text = metrics.render();
    const families = parseExposition(text);
    expect(value(families, 'novalet_dead_letters_total', { code: weird })).toBe(1);
    expect(value(families, 'novalet_build_failures_total', { code: 'x"}\n# TYPE evil counter' })).toBe(1);
    expect(value(families, 'novalet_instances', { state: 'active\\', virt_type: '"kvm"' })).toBe(1);
    expect(families.has('evil')).toBe(false);
  });
});
