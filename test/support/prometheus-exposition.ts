/**
 * A strict reader of the Prometheus text exposition format 0.0.4, for the
 * tests of what GET /metrics serves: every line in the grammar, HELP and
 * TYPE once and before their samples, a family's samples together, no
 * series twice, label values unescaped as written, empty lines ignored, counters named _total,
 * histograms cumulative up to +Inf = _count. It throws on the first line
 * that breaks a rule.
 */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}
export interface Family {
  name: string;
  type: string;
  help: string;
  samples: Sample[];
}

const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*';
const LABEL_NAME = '[a-zA-Z_][a-zA-Z0-9_]*';
const LABEL_VALUE = '"(?:[^"\\\\\\n]|\\\\[\\\\"n])*"';
/** A float as Go's strconv.ParseFloat reads it, which the format names: NaN and Inf in any case (prom-client writes "Nan"). */
const VALUE = '(?:[+-]?(?:[0-9]+(?:\\.[0-9]*)?|\\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?[iI][nN][fF](?:[iI][nN][iI][tT][yY])?|[nN][aA][nN])';
const SAMPLE = new RegExp(`^(${NAME})(?:\\{((?:${LABEL_NAME}=${LABEL_VALUE})(?:,${LABEL_NAME}=${LABEL_VALUE})*)?\\})? (${VALUE})(?: -?[0-9]+)?$`);
const LABEL = new RegExp(`(${LABEL_NAME})=(${LABEL_VALUE})`, 'g');
const HELP = new RegExp(`^# HELP (${NAME}) ((?:[^\\\\\\n]|\\\\[\\\\n])*)$`);
const TYPE = new RegExp(`^# TYPE (${NAME}) (counter|gauge|histogram|summary|untyped)$`);

function unescape(quoted: string): string {
  return quoted.slice(1, -1).replace(/\\(["\\n])/g, (_m, c: string) => (c === 'n' ? '\n' : c));
}

function parseValue(text: string): number {
  const special = text.toLowerCase().replace('infinity', 'inf');
  if (special === 'inf' || special === '+inf') return Infinity;
  if (special === '-inf') return -Infinity;
  if (special === 'nan') return Number.NaN;
  return Number(text);
}

/** Which family a sample name belongs to, given the families' types. */
export function familyOf(name: string, families: Map<string, Family>): Family | undefined {
  const direct = families.get(name);
  if (direct) return direct;
  const match = /^(.*)_(bucket|sum|count)$/.exec(name);
  const base = match ? families.get(match[1]!) : undefined;
  return base && (base.type === 'histogram' || base.type === 'summary') ? base : undefined;
}

/** A strict reading of the exposition: throws on the first line that breaks a rule. */
export function parseExposition(text: string): Map<string, Family> {
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
    // The format ignores empty lines (prom-client puts one between families) and comments other than HELP and TYPE.
    if (line === '' || line.startsWith('#')) continue;
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

export const value = (families: Map<string, Family>, name: string, labels: Record<string, string> = {}): number | undefined => {
  const family = familyOf(name, families);
  return family?.samples.find((s) => s.name === name && JSON.stringify(Object.entries(s.labels).sort()) === JSON.stringify(Object.entries(labels).sort()))?.value;
};

