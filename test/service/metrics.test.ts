/**
 * service/metrics.ts: a prom-client registry with the process metrics the
 * issue asks for (resident memory, open descriptors, event-loop lag), read
 * back by the strict exposition parser (test/support/prometheus-exposition.ts),
 * whose own refusals are checked first so that the checks can fail.
 */
import { closeSync, openSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { Counter, serviceRegistry } from '../../service/metrics.js';
import { parseExposition, value } from '../support/prometheus-exposition.js';

describe('the strict exposition parser', () => {
  it('refuses what breaks the format (so the checks that use it can fail)', () => {
    const ok = '# HELP a_total A.\n# TYPE a_total counter\na_total 1\n';
    expect(() => parseExposition(ok)).not.toThrow();
    // What Go's ParseFloat takes is a value (prom-client writes NaN as "Nan"); an empty line is ignored.
    expect(value(parseExposition('# HELP g G.\n# TYPE g gauge\ng Nan\n\n# HELP h H.\n# TYPE h gauge\nh -inf\n'), 'h')).toBe(-Infinity);
    for (const bad of [
      'a_total 1\n', // no HELP/TYPE
      '# HELP a_total A.\n# TYPE a_total counter\na_total 1', // no final line feed
      '# HELP a_total A.\n# TYPE a_total counter\na_total{code="x\ny"} 1\n', // raw line feed in a label value
      '# HELP a_total A.\n# TYPE a_total counter\na_total{code="x"y"} 1\n', // raw quote
      '# HELP a_total A.\n# TYPE a_total counter\na_total{code="a\\tb"} 1\n', // an escape the format does not have
      '# HELP a_total A.\n# TYPE a_total counter\na_total one\n',
      '# HELP a_total A.\n# TYPE a_total counter\na_total +NaN\n',
      '# HELP a_total A.\n# TYPE a_total counter\na_total 1\na_total 2\n', // series twice
      '# HELP a A.\n# TYPE a counter\na 1\n', // a counter not named _total
      '# HELP h A.\n# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n', // not cumulative
      '# HELP h A.\n# TYPE h histogram\nh_bucket{le="1"} 1\nh_bucket{le="+Inf"} 2\nh_sum 1\nh_count 3\n', // +Inf != count
      '# HELP h A.\n# TYPE h histogram\nh_bucket{le="1"} 1\nh_sum 1\nh_count 1\n', // no +Inf
    ]) {
      expect(() => parseExposition(bad), bad).toThrow();
    }
  });
});

describe('a service registry', () => {
  it('has the process metrics, all in the format: resident memory, open descriptors, event-loop lag', async () => {
    const registry = serviceRegistry();
    const families = parseExposition(await registry.metrics());
    for (const name of ['process_resident_memory_bytes', 'process_open_fds', 'process_max_fds', 'nodejs_eventloop_lag_seconds', 'nodejs_eventloop_lag_p99_seconds', 'process_cpu_seconds_total']) {
      expect(families.has(name), name).toBe(true);
    }
    const rss = value(families, 'process_resident_memory_bytes')!;
    const actual = process.memoryUsage().rss;
    expect(rss).toBeGreaterThan(actual / 2);
    expect(rss).toBeLessThan(actual * 2);
    expect(registry.contentType).toBe('text/plain; version=0.0.4; charset=utf-8');
  });

  it('counts the descriptors the process opens', async () => {
    const registry = serviceRegistry();
    const before = value(parseExposition(await registry.metrics()), 'process_open_fds')!;
    const opened = Array.from({ length: 40 }, () => openSync('/dev/null', 'r'));
    try {
      const during = value(parseExposition(await registry.metrics()), 'process_open_fds')!;
      expect(during - before).toBeGreaterThanOrEqual(40);
    } finally {
      for (const fd of opened) closeSync(fd);
    }
  });

  it('sees the event loop held: its lag after a 300 ms block is at least 200 ms', async () => {
    const registry = serviceRegistry();
    // A first read resets prom-client's delay histogram.
    await registry.metrics();
    await new Promise((resolve) => setTimeout(resolve, 50));
    const until = performance.now() + 300;
    while (performance.now() < until) {
      // Holding the loop, as a synchronous bug would.
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
    const families = parseExposition(await registry.metrics());
    expect(value(families, 'nodejs_eventloop_lag_max_seconds')).toBeGreaterThanOrEqual(0.2);
  });

  it('is a registry of its own: metrics of one are not in another, nor in prom-client\'s global one', async () => {
    const one = serviceRegistry({ processMetrics: false });
    const two = serviceRegistry({ processMetrics: false });
    new Counter({ name: 'novalet_test_things_total', help: 'Things.', registers: [one] }).inc(3);
    expect(value(parseExposition(await one.metrics()), 'novalet_test_things_total')).toBe(3);
    expect(await two.metrics()).toBe('\n');
    const { register } = await import('prom-client');
    expect(register.getSingleMetric('novalet_test_things_total')).toBeUndefined();
  });
});
