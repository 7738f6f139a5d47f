/**
 * Prometheus metrics for every novalet service, through prom-client (the
 * ecosystem's client): a registry of the service's own, with prom-client's
 * process metrics on it — resident memory (process_resident_memory_bytes),
 * open descriptors (process_open_fds, process_max_fds), event-loop lag
 * (nodejs_eventloop_lag_seconds and its percentiles), CPU, heap, GC.
 * Each service defines its metrics on the registry (agent/metrics.ts for
 * the compute service); GET /metrics (service/http-server.ts) serves
 * `registry.metrics()`.
 *
 * A registry of its own rather than prom-client's global one: two services
 * in one process (tests) do not share counters.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

export { Counter, Gauge, Histogram, Registry };

export interface ServiceRegistryOptions {
  /** prom-client's process and Node metrics (default true). */
  processMetrics?: boolean;
}

export function serviceRegistry(options: ServiceRegistryOptions = {}): Registry {
  const registry = new Registry();
  if (options.processMetrics !== false) collectDefaultMetrics({ register: registry });
  return registry;
}
