/**
 * The compute host's working parts (agent/compute-core.ts) driven in
 * process, without a broker: requests go straight to its builds and
 * operations, and what its outbox publishes is collected here, in order.
 * For the agent's own logic on the fake driver (fast, one process), and for
 * the launch tests on real libvirt; the same over a real RabbitMQ is
 * test/agent/compute-service.test.ts.
 */
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ComputeCore } from '../../agent/compute-core.js';
import { HandedBack } from '../../service/consumer-runner.js';
import { ServiceMetrics } from '../../agent/metrics.js';
import type { Operation } from '../../agent/operations.js';
import { loadConfig } from '../../config/load-config.js';
import { createLogger, type Logger } from '../../config/logger.js';
import { NovaletError } from '../../config/novalet-error.js';
import type { NovaletConfig } from '../../config/novalet-config.js';
import type { ComputeDriver } from '../../hypervisor/compute-driver.js';
import type { ServiceStatus } from '../../messaging/contracts/capability-report.js';
import type { OutboxMessage, OutboxPublisher } from '../../service/outbox.js';
import { FakeComputeDriver } from './fake-compute-driver.js';

export interface Published {
  id: string;
  routingKey: string;
  kind: string;
  body: Record<string, unknown>;
}

/** Collects what the outbox publishes; the broker can be "down" (publishes fail) or have no queue for a key. */
export class CollectingPublisher implements OutboxPublisher {
  readonly published: Published[] = [];
  readonly deadLettered: Published[] = [];
  readonly unroutableKeys = new Set<string>();
  up = true;

  async publish(m: OutboxMessage): Promise<void> {
    if (!this.up) throw new NovaletError('BROKER_PUBLISH_FAILED', 'the broker is down (test)');
    if (m.mandatory && this.unroutableKeys.has(m.routingKey)) throw new NovaletError('MESSAGE_UNROUTABLE', `no queue takes ${m.routingKey} (test)`);
    this.published.push(parse(m));
  }

  async unroutable(m: OutboxMessage): Promise<void> {
    if (!this.up) throw new NovaletError('BROKER_PUBLISH_FAILED', 'the broker is down (test)');
    this.deadLettered.push(parse(m));
  }
}

function parse(m: OutboxMessage): Published {
  const envelope = JSON.parse(m.content) as { kind: string; body: Record<string, unknown> };
  return { id: m.id, routingKey: m.routingKey, kind: envelope.kind, body: envelope.body };
}

export interface HarnessOptions {
  driver?: ComputeDriver;
  /** A configuration of the caller's (its state_path and image_dir used as they are); else one of the harness's own. */
  config?: NovaletConfig;
  /** Extra lines of the [DEFAULT] section. */
  defaults?: string[];
  /** A state folder to use (a "restart" reuses the previous one). */
  stateDir?: string;
  service?: ServiceStatus;
  publisher?: CollectingPublisher;
  log?: Logger;
}

export class AgentHarness {
  readonly work = new Set<{ abort: AbortController; done: Promise<void> }>();
  readonly core: ComputeCore;
  readonly metrics = new ServiceMetrics();

  private constructor(
    readonly config: NovaletConfig,
    readonly driver: ComputeDriver,
    readonly publisher: CollectingPublisher,
    log: Logger,
    service: ServiceStatus,
  ) {
    this.core = new ComputeCore({
      config: () => this.config,
      driver,
      log,
      metrics: this.metrics,
      publisher,
      track: (work) => this.#track(work),
      service: () => service,
      inventory: async () => ({ vcpus: 4, memoryMb: 4096, localGb: 40 }),
      changed: () => undefined,
    });
  }

  /** A harness on a fresh state folder (or `stateDir`), its records loaded and its outbox publishing. */
  static async start(options: HarnessOptions = {}): Promise<AgentHarness> {
    const config = options.config ?? harnessConfig(options);
    const harness = new AgentHarness(config, options.driver ?? new FakeComputeDriver(), options.publisher ?? new CollectingPublisher(), options.log ?? createLogger({ name: 'agent-harness' }), options.service ?? { state: 'up', disabled_reason: null });
    await harness.core.load();
    harness.core.outbox.start();
    return harness;
  }

  get stateDir(): string {
    return this.config.DEFAULT.state_path;
  }

  /** Takes a build request on (returns once it is recorded or answered); `settle()` waits for the build itself. */
  async build(body: unknown, id: string = randomUUID()): Promise<string> {
    await this.core.builds.take(body as Parameters<ComputeCore['builds']['take']>[0], id, performance.now());
    return id;
  }

  async operate(op: Operation, id: string = randomUUID()): Promise<string> {
    await this.core.operations.run(op, id);
    return id;
  }

  /** Waits for every build under way and for the outbox to be empty. */
  async settle(): Promise<void> {
    while (this.work.size > 0) await Promise.all([...this.work].map((w) => w.done));
    await this.core.outbox.drained();
  }

  /** The events published for `uuid`, by name, in order. */
  events(uuid: string): string[] {
    return this.publisher.published.filter((m) => m.kind === 'event' && m.body.uuid === uuid).map((m) => String(m.body.event));
  }

  /** Waits (polling, bounded only by the test's timeout) until `uuid`'s event `name` was published. */
  async waitForEvent(uuid: string, name: string): Promise<Published> {
    for (;;) {
      const found = this.event(uuid, name);
      if (found) return found;
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }

  event(uuid: string, name: string): Published | undefined {
    return this.publisher.published.find((m) => m.kind === 'event' && m.body.uuid === uuid && m.body.event === name);
  }

  /** As SIGTERM does: the builds under way are handed back (records left BUILDING), the outbox stops. */
  async stop(): Promise<void> {
    for (const w of this.work) w.abort.abort(new HandedBack());
    await Promise.all([...this.work].map((w) => w.done));
    await this.core.outbox.stop();
    await this.core.store.settle();
  }

  /** As kill -9 does: nothing more runs (no stop); the state folder is what it is. */
  async crash(): Promise<void> {
    await this.core.outbox.stop();
    for (const w of this.work) w.abort.abort(new HandedBack());
  }

  remove(): void {
    rmSync(this.stateDir, { recursive: true, force: true });
  }

  #track(work: (stopping: AbortSignal) => Promise<void>): Promise<void> {
    const abort = new AbortController();
    const entry = { abort, done: Promise.resolve() };
    entry.done = work(abort.signal)
      .catch(() => undefined)
      .finally(() => this.work.delete(entry));
    this.work.add(entry);
    return entry.done;
  }
}

function harnessConfig(options: HarnessOptions): NovaletConfig {
  const dir = options.stateDir ?? mkdtempSync(path.join(tmpdir(), 'nvl-agent-'));
  mkdirSync(path.join(dir, 'images'), { recursive: true });
  writeFileSync(path.join(dir, 'images', 'vmlinuz'), 'kernel');
  const file = path.join(dir, 'novalet.conf');
  writeFileSync(file, ['[DEFAULT]', 'host = harness-host', `state_path = ${dir}`, 'graceful_shutdown_timeout = 1', 'shutdown_timeout = 0', ...(options.defaults ?? []), '[compute]', `image_dir = ${path.join(dir, 'images')}`].join('\n'));
  return loadConfig({ configFiles: [file] }).values;
}

/** A build body of the wire contract: a kernel by name from the harness's image folder. */
export function buildBody(uuid: string, extra: Record<string, unknown> = {}, flavor: Record<string, unknown> = {}) {
  return {
    instance: {
      uuid,
      name: `vm-${uuid.slice(0, 4)}`,
      flavor: { name: 'm1.tiny', vcpus: 1, memory_mb: 256, root_gb: 1, extra_specs: {}, ...flavor },
      image: { kernel: { name: 'vmlinuz' }, cmdline: 'console=ttyS0', properties: {} },
    },
    ...extra,
  };
}
