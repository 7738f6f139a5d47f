/**
 * The compute host's working parts, put together once: the records, the
 * outbox that publishes what they report, the instances, builds and
 * operations, with the per-instance locks and the build slots they share.
 * ComputeService adds the bus (the consumer, replies, reports) around it;
 * tests and benchmarks drive it in process (test/support/agent-harness.ts).
 */
import path from 'node:path';
import type { Logger } from '../config/logger.js';
import type { NovaletConfig } from '../config/novalet-config.js';
import type { ComputeDriver } from '../hypervisor/compute-driver.js';
import type { ServiceStatus } from '../messaging/contracts/capability-report.js';
import { KeyedLock } from '../service/keyed-lock.js';
import { Outbox, type OutboxPublisher } from '../service/outbox.js';
import { Slots } from '../service/slots.js';
import { Builds } from './builds.js';
import { ComputeInstances } from './compute-instances.js';
import { InstanceMessages } from './instance-messages.js';
import { InstanceStore } from './instance-store.js';
import type { ServiceMetrics } from './metrics.js';
import { Operations } from './operations.js';
import type { HostInventory } from './resources.js';

export interface ComputeCoreOptions {
  config: () => NovaletConfig;
  driver: ComputeDriver;
  log: Logger;
  metrics: ServiceMetrics;
  publisher: OutboxPublisher;
  /** Runs background work tracked by the service (ConsumerRunner.track). */
  track: (work: (stopping: AbortSignal) => Promise<void>) => Promise<void>;
  service: () => ServiceStatus;
  inventory: () => Promise<HostInventory>;
  /** Something a capability report shows changed. */
  changed: () => void;
}

export class ComputeCore {
  readonly store: InstanceStore;
  readonly outbox: Outbox;
  readonly instances: ComputeInstances;
  readonly slots: Slots;
  readonly locks = new KeyedLock();
  readonly builds: Builds;
  readonly operations: Operations;

  constructor(options: ComputeCoreOptions) {
    const { config, driver, log, metrics, changed } = options;
    const { DEFAULT } = config();
    this.store = new InstanceStore(path.join(DEFAULT.state_path, 'instances.d'), log);
    this.outbox = new Outbox({ dir: path.join(DEFAULT.state_path, 'outbox.d'), log, publisher: options.publisher, published: () => metrics.outboxPublished() });
    this.store.onPending = (uuid, messages) => this.outbox.hold(messages, (id) => this.store.confirm(uuid, id));
    this.instances = new ComputeInstances(driver, this.store, new InstanceMessages(DEFAULT.host));
    this.slots = new Slots(DEFAULT.max_concurrent_builds);
    this.builds = new Builds(
      { config, instances: this.instances, outbox: this.outbox, track: options.track, locks: this.locks, slots: this.slots, log, metrics, service: options.service, inventory: options.inventory, changed },
      new KeyedLock(),
    );
    this.operations = new Operations({ config, instances: this.instances, builds: this.builds, outbox: this.outbox, locks: this.locks, log, metrics, changed });
  }

  /** Reads the records and the outbox (once, at start): what was not confirmed before is queued again. */
  async load(): Promise<Awaited<ReturnType<InstanceStore['load']>>> {
    const loaded = await this.store.load();
    for (const { uuid, messages } of this.store.pending()) this.outbox.hold(messages, (id) => this.store.confirm(uuid, id));
    await this.outbox.load();
    return loaded;
  }
}
