/**
 * What the trial of issue 16 found at the bus, reproduced against a real
 * RabbitMQ (a private one) with the compute service in process on the fake
 * driver:
 *
 * - a placed build that fails sends its `reschedule` to `novalet.scheduler`,
 *   which the compute host declares itself (trial point 3: the queue did
 *   not exist, the publish was not mandatory, the request vanished); with
 *   that queue gone the reschedule comes back and is dead-lettered
 *   UNROUTABLE with the reason, never dropped in silence;
 * - calls are answered while builds are queued behind held spawns (trial
 *   point 8: before, each build occupied a prefetch slot until it ended,
 *   so a `show` behind them waited 15–18 s; with spawns that never end it
 *   is never answered). The order of events is asserted, not a time
 *   (bench/ measures that);
 * - a call without `reply_to` is dead-lettered REPLY_TO_MISSING and not run
 *   (before, it ran and its answer went nowhere).
 */
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import amqp from 'amqplib';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ComputeService } from '../../agent/compute-service.js';
import { ServiceMetrics } from '../../agent/metrics.js';
import { loadConfig } from '../../config/load-config.js';
import { createLogger } from '../../config/logger.js';
import { NovaletError } from '../../config/novalet-error.js';
import type { NovaletConfig } from '../../config/novalet-config.js';
import { Broker } from '../../messaging/broker.js';
import { brokerOptionsFrom } from '../../messaging/broker-options.js';
import { answerId } from '../../service/message-ids.js';
import { BusClient, type DeadLetter } from '../support/bus-client.js';
import { FAKE_CAPABILITIES, FakeComputeDriver } from '../support/fake-compute-driver.js';
import { startRabbitMq, type RabbitMqHandle } from '../support/rabbitmq.js';

let rabbit: RabbitMqHandle;
let client: BusClient;
let admin: amqp.ChannelModel;
let channel: amqp.Channel;
const dirs: string[] = [];
const running: { service: ComputeService; broker: Broker }[] = [];

beforeAll(async () => {
  rabbit = await startRabbitMq();
  // No queue of the test's own is bound to `scheduler`: what reaches the schedulers is read from novalet.scheduler itself.
  client = await BusClient.connect(rabbit.url);
  admin = await amqp.connect(rabbit.url);
  channel = await admin.createChannel();
}, 120_000);

afterAll(async () => {
  await client?.close();
  await admin?.close().catch(() => undefined);
  await rabbit?.stop();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
}, 60_000);

afterEach(async () => {
  for (const { service, broker } of running.splice(0)) {
    await service.stop();
    await broker.stop();
  }
});

const { cpu: _cpu, ...capabilities } = FAKE_CAPABILITIES;
const log = createLogger({ name: 'compute-bus-faults-test' });

/** The fake driver, counting console reads (a call that is run reads it). */
class CountingDriver extends FakeComputeDriver {
  consoleReads = 0;
  override async consoleOutput(uuid: string, lines: number): Promise<string[]> {
    this.consoleReads += 1;
    return super.consoleOutput(uuid, lines);
  }
}

function configFor(host: string, extra: string[] = []): NovaletConfig {
  const dir = mkdtempSync(path.join(tmpdir(), 'nvl-busfaults-'));
  dirs.push(dir);
  mkdirSync(path.join(dir, 'images'));
  writeFileSync(path.join(dir, 'images', 'vmlinuz'), 'kernel');
  const file = path.join(dir, 'novalet.conf');
  writeFileSync(
    file,
    ['[DEFAULT]', `host = ${host}`, `state_path = ${dir}`, `transport_url = ${rabbit.transportUrl}`, 'report_interval = 1', 'graceful_shutdown_timeout = 1', ...extra, '[compute]', `image_dir = ${path.join(dir, 'images')}`].join('\n'),
  );
  return loadConfig({ configFiles: [file] }).values;
}

async function startService(config: NovaletConfig, driver: FakeComputeDriver = new CountingDriver()) {
  const broker = new Broker(brokerOptionsFrom(config), log, { computeHost: config.DEFAULT.host, scheduler: true });
  const service = new ComputeService({
    config,
    driver,
    broker,
    log,
    metrics: new ServiceMetrics(),
    capabilities,
    service: { state: 'up', disabled_reason: null },
    inventory: async () => ({ vcpus: 64, memoryMb: 65536, localGb: 1000 }),
  });
  await broker.start();
  await service.load();
  await service.reconcile();
  await service.serve();
  running.push({ service, broker });
  return { service, broker, driver };
}

function build(uuid: string, extra: Record<string, unknown> = {}) {
  return {
    instance: {
      uuid,
      name: `vm-${uuid.slice(0, 4)}`,
      flavor: { name: 'm1.tiny', vcpus: 1, memory_mb: 256, root_gb: 1, extra_specs: {} },
      image: { kernel: { name: 'vmlinuz' }, cmdline: 'console=ttyS0', properties: {} },
    },
    ...extra,
  };
}

const placed = { request: { attempt: 1, max_attempts: 3, alternates: ['host-b'], faults: [] } };
const newHost = () => `busf-${randomUUID().slice(0, 8)}`;

/** Everything in novalet.dead, polled until `enough` holds. */
async function deadLettersUntil(enough: (taken: DeadLetter[]) => boolean): Promise<DeadLetter[]> {
  const taken: DeadLetter[] = [];
  const deadline = Date.now() + 30_000;
  while (!enough(taken)) {
    if (Date.now() > deadline) throw new Error(`novalet.dead did not get what was expected: ${JSON.stringify(taken.map((d) => d.headers))}`);
    taken.push(...(await client.takeDeadLetters()));
    await new Promise((r) => setTimeout(r, 100));
  }
  return taken;
}

describe('the compute service at the bus (issue 16 trial points 3, 8 and calls without reply_to)', () => {
  it('calls are answered while builds wait behind held spawns: show and list reply before any build ends', async () => {
    const host = newHost();
    const driver = new CountingDriver();
    driver.holdSpawns();
    // Two slots, a prefetch of four: twelve builds are more than both.
    await startService(configFor(host, ['max_concurrent_builds = 2']), driver);
    const uuids = Array.from({ length: 12 }, () => randomUUID());
    for (const uuid of uuids) await client.send(host, 'build', build(uuid));
    await client.waitFor('two builds started', () => client.events.filter((e) => e.envelope.body.event === 'create.start').length === 2 || undefined);
    expect(await client.call(host, 'show', { uuid: uuids[0] })).toMatchObject({ ok: true, result: { uuid: uuids[0], state: 'building', task: 'spawning' } });
    // Lists answered one after another while the builds are taken on, until all twelve are on record.
    let listed: { uuid: string; state: string }[] = [];
    for (let i = 0; i < 100 && listed.length < uuids.length; i++) {
      listed = await client.list(host);
      if (listed.length < uuids.length) await new Promise((r) => setTimeout(r, 100));
    }
    expect(listed.map((i) => i.uuid).sort()).toEqual([...uuids].sort());
    expect(listed.every((i) => i.state === 'building')).toBe(true);
    const last = await client.call(host, 'show', { uuid: uuids[11] });
    expect(last).toMatchObject({ ok: true, result: { uuid: uuids[11], state: 'building', task: 'scheduling' } });
    // All answered while every build still waits: none has ended, two hold the slots, the others wait for one.
    expect(client.events.filter((e) => e.envelope.body.event === 'create.end')).toEqual([]);
    expect(driver.calls.filter((c) => c.startsWith('spawn'))).toHaveLength(2);
    driver.releaseSpawns();
    for (const uuid of uuids) await client.waitForEvent(uuid, 'create.end');
    for (const uuid of uuids) expect(client.eventsOf(uuid)).toEqual(['create.start', 'create.end']);
  });

  it('a call without reply_to is dead-lettered REPLY_TO_MISSING and not run; the service keeps answering calls', async () => {
    const host = newHost();
    const { driver } = await startService(configFor(host));
    const uuid = randomUUID();
    await client.send(host, 'build', build(uuid));
    await client.waitForEvent(uuid, 'create.end');
    await client.takeDeadLetters();
    const id = randomUUID();
    const call = { version: 1, kind: 'console', id, sent_at: new Date().toISOString(), body: { uuid, lines: 5 } };
    await client.sendRaw(host, Buffer.from(JSON.stringify(call)), { messageId: id, correlationId: randomUUID() });
    const [dead] = await deadLettersUntil((taken) => taken.length > 0);
    expect(dead!.headers['x-novalet-error']).toBe('REPLY_TO_MISSING');
    expect(dead!.headers['x-novalet-routing-key']).toBe(`compute.${host}`);
    expect(String(dead!.headers['x-novalet-reason'])).toMatch(/reply_to/);
    expect(JSON.parse(dead!.content.toString('utf8'))).toMatchObject({ kind: 'console', id });
    expect((driver as CountingDriver).consoleReads).toBe(0);
    // With a reply_to, the same call is run and answered.
    expect(await client.call(host, 'console', { uuid, lines: 5 })).toMatchObject({ ok: true });
    expect((driver as CountingDriver).consoleReads).toBe(1);
    expect(await client.depth(`novalet.compute.${host}`)).toBe(0);
  });

  // Last in the file: it deletes novalet.scheduler, which every compute host declares only when it connects.
  it('a placed build that fails: its reschedule reaches novalet.scheduler; with that queue gone, it is dead-lettered UNROUTABLE', async () => {
    const host = newHost();
    const { driver } = await startService(configFor(host));
    await channel.purgeQueue('novalet.scheduler');
    const uuid = randomUUID();
    driver.failNextSpawn(new NovaletError('QEMU_IMG_FAILED', 'qemu-img could not create the overlay.', 'Check qemu-img.'));
    const id = await client.send(host, 'build', build(uuid, placed));
    const error = await client.waitForEvent(uuid, 'create.error');
    expect(error.envelope.body).toMatchObject({ will_retry: true, fault: { code: 'QEMU_IMG_FAILED' } });
    let reschedule: amqp.GetMessage | false = false;
    for (let i = 0; i < 100 && !reschedule; i++) {
      reschedule = await channel.get('novalet.scheduler', { noAck: true });
      if (!reschedule) await new Promise((r) => setTimeout(r, 100));
    }
    expect(reschedule).not.toBe(false);
    const envelope = JSON.parse((reschedule as amqp.GetMessage).content.toString('utf8')) as { kind: string; id: string; body: { instance: { uuid: string }; request: { faults: unknown[] } } };
    expect(envelope).toMatchObject({ kind: 'reschedule', id: answerId(id, 'reschedule'), body: { instance: { uuid } } });
    expect(envelope.body.request.faults).toEqual([expect.objectContaining({ host, code: 'QEMU_IMG_FAILED' })]);

    // No scheduler queue, no binding: the mandatory reschedule comes back and is kept in novalet.dead with why.
    await channel.deleteQueue('novalet.scheduler');
    await client.takeDeadLetters();
    const lost = randomUUID();
    driver.failNextSpawn(new NovaletError('QEMU_IMG_FAILED', 'qemu-img could not create the overlay.', 'Check qemu-img.'));
    const lostId = await client.send(host, 'build', build(lost, placed));
    await client.waitForEvent(lost, 'create.error');
    const taken = await deadLettersUntil((t) => t.some((d) => d.headers['x-novalet-error'] === 'UNROUTABLE'));
    const unroutable = taken.filter((d) => d.headers['x-novalet-error'] === 'UNROUTABLE');
    expect(unroutable).toHaveLength(1);
    expect(unroutable[0]!.headers['x-novalet-routing-key']).toBe('scheduler');
    expect(String(unroutable[0]!.headers['x-novalet-reason'])).toMatch(/scheduler/);
    expect(JSON.parse(unroutable[0]!.content.toString('utf8'))).toMatchObject({ kind: 'reschedule', id: answerId(lostId, 'reschedule'), body: { instance: { uuid: lost } } });
  });
});
