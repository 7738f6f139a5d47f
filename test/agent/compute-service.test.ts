/**
 * The compute service's handling of the bus, against a real RabbitMQ
 * (a private one on 127.0.0.1) and the fake compute driver: builds and
 * their events, idempotence by message id and by instance UUID, the
 * dead-lettering of malformed messages, refusals and reschedules,
 * per-instance serialisation, calls, reports, and a stop with a build in
 * flight. The same on real libvirt and QEMU, with a real `novalet compute`
 * process, is test/integration/compute-service.test.ts.
 */
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ComputeService } from '../../agent/compute-service.js';
import { ServiceMetrics } from '../../agent/metrics.js';
import { loadConfig } from '../../config/load-config.js';
import { createLogger } from '../../config/logger.js';
import type { NovaletConfig } from '../../config/novalet-config.js';
import { Broker } from '../../messaging/broker.js';
import { brokerOptionsFrom } from '../../messaging/broker-options.js';
import type { ServiceStatus } from '../../messaging/contracts/capability-report.js';
import { answerId } from '../../service/message-ids.js';
import { buildBody } from '../support/agent-harness.js';
import { BusClient } from '../support/bus-client.js';
import { FAKE_CAPABILITIES, FakeComputeDriver } from '../support/fake-compute-driver.js';
import { startRabbitMq, type RabbitMqHandle } from '../support/rabbitmq.js';

let rabbit: RabbitMqHandle;
let client: BusClient;
const dirs: string[] = [];
const running: { service: ComputeService; broker: Broker }[] = [];

beforeAll(async () => {
  rabbit = await startRabbitMq();
  client = await BusClient.connect(rabbit.url, { scheduler: true });
}, 120_000);

afterAll(async () => {
  await client?.close();
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
const log = createLogger({ name: 'compute-service-test' });

function configFor(host: string, extra = ''): NovaletConfig {
  const dir = mkdtempSync(path.join(tmpdir(), 'nvl-svc-'));
  dirs.push(dir);
  mkdirSync(path.join(dir, 'images'));
  writeFileSync(path.join(dir, 'images', 'vmlinuz'), 'kernel');
  const file = path.join(dir, 'novalet.conf');
  writeFileSync(
    file,
    ['[DEFAULT]', `host = ${host}`, `state_path = ${dir}`, `transport_url = ${rabbit.url.replace(/^amqp:/, 'rabbit:')}`, 'report_interval = 1', 'graceful_shutdown_timeout = 1', extra, '[compute]', `image_dir = ${path.join(dir, 'images')}`].join('\n'),
  );
  return loadConfig({ configFiles: [file] }).values;
}

async function startService(config: NovaletConfig, driver = new FakeComputeDriver(), status: ServiceStatus = { state: 'up', disabled_reason: null }, logger = log) {
  const broker = new Broker(brokerOptionsFrom(config), log, { computeHost: config.DEFAULT.host, scheduler: true });
  const metrics = new ServiceMetrics();
  const service = new ComputeService({
    config,
    driver,
    broker,
    log: logger,
    metrics,
    capabilities,
    service: status,
    inventory: async () => ({ vcpus: 4, memoryMb: 2048, localGb: 40 }),
  });
  await broker.start();
  await service.load();
  await service.reconcile();
  await service.serve();
  running.push({ service, broker });
  return { service, broker, driver, metrics };
}

const build = buildBody;

const newHost = () => `svc-${randomUUID().slice(0, 8)}`;

describe('ComputeService over RabbitMQ (fake driver)', () => {
  it('builds: create.start then create.end with the virt type and why; the request is acknowledged; a full report lists it', async () => {
    const host = newHost();
    const { driver } = await startService(configFor(host));
    const uuid = randomUUID();
    await client.send(host, 'build', build(uuid));
    const end = await client.waitForEvent(uuid, 'create.end');
    expect(end.envelope.body).toMatchObject({ uuid, host, state: 'active', virt_type: 'qemu' });
    expect(client.eventsOf(uuid)).toEqual(['create.start', 'create.end']);
    expect(driver.calls.filter((c) => c === `spawn ${uuid}`)).toHaveLength(1);
    await client.waitFor('a full report with the instance', () =>
      client.reports(host).find((r) => r.envelope.body.report === 'full' && (r.envelope.body.instances as { uuid: string }[]).some((i) => i.uuid === uuid)),
    );
    expect(await client.depth(`novalet.compute.${host}`)).toBe(0);
  });

  it('the same message twice, and the same instance under a second message id: one guest', async () => {
    const host = newHost();
    const { driver } = await startService(configFor(host));
    const uuid = randomUUID();
    const id = randomUUID();
    await client.send(host, 'build', build(uuid), id);
    await client.send(host, 'build', build(uuid), id);
    const second = await client.send(host, 'build', build(uuid));
    // The second message is answered after the build, under its own id.
    await client.waitFor(`the second message's create.end`, () => client.events.find((e) => e.envelope.id === answerId(second, 'create.end')));
    expect((await client.list(host)).filter((i) => i.uuid === uuid)).toHaveLength(1);
    expect(driver.calls.filter((c) => c === `spawn ${uuid}`)).toHaveLength(1);
    // Repeats dropped by id (docs/messages.md): the build's start and end, and the second message's end.
    const byId = new Map(client.events.filter((e) => e.envelope.body.uuid === uuid).map((e) => [e.envelope.id, e.envelope.body.event]));
    expect([...byId]).toEqual([
      [answerId(id, 'create.start'), 'create.start'],
      [answerId(id, 'create.end'), 'create.end'],
      [answerId(second, 'create.end'), 'create.end'],
    ]);
  });

  it('dead-letters each malformed message with a code and a reason naming the field, and keeps serving', async () => {
    const host = newHost();
    const { driver } = await startService(configFor(host));
    await client.takeDeadLetters();
    const envelope = (kind: string, body: unknown) => Buffer.from(JSON.stringify({ version: 1, kind, id: randomUUID(), sent_at: new Date().toISOString(), body }));
    const cases: [string, Buffer, string][] = [
      ['not JSON', Buffer.from('{"version": 1, '), 'MESSAGE_NOT_JSON'],
      ['no envelope', Buffer.from('{"hello": "world"}'), 'ENVELOPE_INVALID'],
      ['unknown version', Buffer.from(JSON.stringify({ version: 7, kind: 'build', id: randomUUID(), sent_at: new Date().toISOString(), body: {} })), 'VERSION_UNSUPPORTED'],
      ['unknown kind', envelope('explode', {}), 'KIND_UNKNOWN'],
      ['wrong types', envelope('build', build(randomUUID(), {}, { vcpus: 'two' })), 'BODY_INVALID'],
      ['absurd values', envelope('build', build(randomUUID(), {}, { memory_mb: -5 })), 'BODY_INVALID'],
      ['a path for an image', envelope('build', { ...build(randomUUID()), instance: { ...build(randomUUID()).instance, image: { name: '../../etc/passwd', properties: {} } } }), 'BODY_INVALID'],
      ['a URL without checksum', envelope('build', { ...build(randomUUID()), instance: { ...build(randomUUID()).instance, image: { url: 'http://x/y.qcow2', properties: {} } } }), 'BODY_INVALID'],
      ['deeply nested', Buffer.from(`${'['.repeat(100_000)}${']'.repeat(100_000)}`), 'MESSAGE_TOO_DEEP'],
      ['huge', Buffer.alloc(2 * 1024 * 1024, 0x20), 'MESSAGE_TOO_LARGE'],
      ['invalid UTF-8', Buffer.concat([Buffer.from('{"version": 1, "kind": "'), Buffer.from([0xc3, 0x28]), Buffer.from('"}')]), 'MESSAGE_NOT_UTF8'],
    ];
    for (const [, content] of cases) await client.sendRaw(host, content);
    const taken: Awaited<ReturnType<BusClient['takeDeadLetters']>> = [];
    const deadline = Date.now() + 20_000;
    while (taken.length < cases.length && Date.now() < deadline) {
      taken.push(...(await client.takeDeadLetters()));
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(taken.map((d) => d.headers['x-novalet-error'])).toEqual(cases.map(([, , code]) => code));
    for (const d of taken) {
      expect(d.headers['x-novalet-routing-key']).toBe(`compute.${host}`);
      expect(String(d.headers['x-novalet-reason']).length).toBeGreaterThan(10);
    }
    expect(String(taken[4]?.headers['x-novalet-reason'])).toContain('vcpus');
    expect(String(taken[6]?.headers['x-novalet-reason'])).toContain('image');
    // The original bytes are kept, unparsed.
    expect(taken[0]?.content.toString()).toBe('{"version": 1, ');
    expect(driver.calls.filter((c) => c.startsWith('spawn'))).toEqual([]);
    // Still serving.
    const uuid = randomUUID();
    await client.send(host, 'build', build(uuid));
    await client.waitForEvent(uuid, 'create.end');
  });

  it('a build that does not fit: refused before the driver is asked; a placed one goes back to the schedulers with the fault', async () => {
    const host = newHost();
    const { driver } = await startService(configFor(host));
    const direct = randomUUID();
    await client.send(host, 'build', build(direct, {}, { memory_mb: 4096 }));
    const error = await client.waitForEvent(direct, 'create.error');
    expect(error.envelope.body).toMatchObject({ state: 'error', will_retry: false, fault: { code: 'INSUFFICIENT_RESOURCES' } });
    expect(String((error.envelope.body.fault as { message: string }).message)).toMatch(/^Insufficient compute resources: Free memory/);
    const placed = randomUUID();
    await client.send(host, 'build', build(placed, { request: { attempt: 1, max_attempts: 3, alternates: ['host-b'], faults: [] } }, { memory_mb: 4096 }));
    const retry = await client.waitForEvent(placed, 'create.error');
    expect(retry.envelope.body).toMatchObject({ will_retry: true, fault: { code: 'INSUFFICIENT_RESOURCES' } });
    const back = await client.waitFor('a reschedule', () => client.scheduler.find((m) => (m.envelope.body.instance as { uuid: string }).uuid === placed));
    expect(back.envelope.kind).toBe('reschedule');
    expect((back.envelope.body.request as { faults: unknown[] }).faults).toEqual([expect.objectContaining({ host, code: 'INSUFFICIENT_RESOURCES' })]);
    expect(driver.calls.filter((c) => c.startsWith('spawn'))).toEqual([]);
    // Not this host's: the placed one is not listed; the direct one is, in ERROR.
    const list = await client.list(host);
    expect(list.map((i) => i.uuid)).toEqual([direct]);
  });

  it('a direct build naming an image the host does not have: ERROR on record with the fault, create.error, nothing built', async () => {
    const host = newHost();
    const { driver } = await startService(configFor(host));
    const uuid = randomUUID();
    const body = build(uuid);
    body.instance.image = { kernel: { name: 'no-such-kernel' }, cmdline: 'console=ttyS0', properties: {} };
    await client.send(host, 'build', body);
    const error = await client.waitForEvent(uuid, 'create.error');
    expect(error.envelope.body).toMatchObject({ state: 'error', will_retry: false, fault: { code: 'IMAGE_NOT_IN_IMAGE_DIR' } });
    const shown = await client.call(host, 'show', { uuid });
    expect(shown).toMatchObject({ ok: true, result: { uuid, state: 'error', fault: { code: 'IMAGE_NOT_IN_IMAGE_DIR' }, flavor: { vcpus: 1, memory_mb: 256, root_gb: 1, name: 'm1.tiny' } } });
    expect(driver.calls).toEqual([]);
  });

  it('a disabled host reports why and refuses builds with HOST_DISABLED, touching nothing', async () => {
    const host = newHost();
    const reason = 'AUTO: could not find capabilities for domaintype=kvm: /dev/kvm does not exist.';
    const { driver } = await startService(configFor(host), new FakeComputeDriver(), { state: 'disabled', disabled_reason: reason });
    const full = await client.waitFor('a full report', () => client.reports(host).find((r) => r.envelope.body.report === 'full'));
    expect(full.envelope.body.service).toEqual({ state: 'disabled', disabled_reason: reason });
    const uuid = randomUUID();
    await client.send(host, 'build', build(uuid));
    const error = await client.waitForEvent(uuid, 'create.error');
    expect(error.envelope.body).toMatchObject({ will_retry: false, fault: { code: 'HOST_DISABLED' } });
    expect(String((error.envelope.body.fault as { message: string }).message)).toContain(reason);
    expect(driver.calls).toEqual([]);
  });

  it('stop, start and reboot: each its event and state; a cast for an unknown instance is answered with action.error and changes nothing', async () => {
    const host = newHost();
    const { driver } = await startService(configFor(host));
    const uuid = randomUUID();
    await client.send(host, 'build', build(uuid));
    await client.waitForEvent(uuid, 'create.end');
    await client.send(host, 'stop', { uuid });
    expect((await client.waitForEvent(uuid, 'power.off')).envelope.body.state).toBe('stopped');
    await client.send(host, 'start', { uuid });
    expect((await client.waitForEvent(uuid, 'power.on')).envelope.body.state).toBe('active');
    await client.send(host, 'reboot', { uuid, type: 'HARD' });
    expect((await client.waitForEvent(uuid, 'reboot.end')).envelope.body.state).toBe('active');
    expect(driver.calls.filter((c) => c.includes(uuid))).toEqual([`spawn ${uuid}`, `powerOff ${uuid} 60000`, `powerOn ${uuid}`, `reboot HARD ${uuid}`]);
    const stranger = randomUUID();
    const stop = await client.send(host, 'stop', { uuid: stranger });
    const error = await client.waitForEvent(stranger, 'action.error');
    expect(error.envelope.id).toBe(answerId(stop, 'action.error'));
    expect(error.envelope.body).toMatchObject({ uuid: stranger, host, state: 'deleted', action: 'stop', fault: { code: 'INSTANCE_NOT_FOUND' } });
    expect(driver.calls.filter((c) => c.endsWith(stranger))).toEqual([]);
    expect(await client.depth(`novalet.compute.${host}`)).toBe(0);
  });

  it('answers calls: show, list and console; an unknown instance is an error reply', async () => {
    const host = newHost();
    await startService(configFor(host));
    const uuid = randomUUID();
    await client.send(host, 'build', build(uuid));
    await client.waitForEvent(uuid, 'create.end');
    const shown = await client.call(host, 'show', { uuid });
    expect(shown).toMatchObject({ ok: true, result: { uuid, state: 'active', host, virt_type: 'qemu' } });
    const console = await client.call(host, 'console', { uuid, lines: 5 });
    expect(console.ok).toBe(true);
    expect(JSON.stringify(console.result)).toContain('NOVALET-TEST-GUEST-READY');
    const missing = await client.call(host, 'show', { uuid: randomUUID() });
    expect(missing).toMatchObject({ ok: false, error: { code: 'INSTANCE_NOT_FOUND' } });
    // A call delivered twice (as after a crash before its ack) is answered twice under one id: the repeat is recognisable.
    const id = randomUUID();
    const [first, again] = [await client.callEnvelope(host, 'show', { uuid }, id), await client.callEnvelope(host, 'show', { uuid }, id)];
    expect(first.envelope.id).toBe(answerId(id, 'reply'));
    expect(again.envelope.id).toBe(first.envelope.id);
  });

  it('a delete sent during the build wins: the build stops at once with create.error (INSTANCE_DELETED_DURING_BUILD), then delete.end', async () => {
    const host = newHost();
    const driver = new FakeComputeDriver();
    driver.holdSpawns();
    await startService(configFor(host), driver);
    const uuid = randomUUID();
    await client.send(host, 'build', build(uuid));
    await client.waitForEvent(uuid, 'create.start');
    // The spawn is held for ever: only the delete's abort can end it.
    await client.send(host, 'delete', { uuid });
    await client.waitForEvent(uuid, 'delete.end');
    expect(client.eventsOf(uuid)).toEqual(['create.start', 'create.error', 'delete.end']);
    expect((await client.waitForEvent(uuid, 'create.error')).envelope.body).toMatchObject({ will_retry: false, fault: { code: 'INSTANCE_DELETED_DURING_BUILD' } });
    expect(driver.calls.filter((c) => c.endsWith(uuid))).toEqual([`spawn ${uuid}`, `destroy ${uuid}`]);
    expect(await driver.list()).toEqual([]);
    driver.releaseSpawns();
  });

  it('logs each build with the time from the request\'s receipt to the guest running (bench/compute-service.ts reads it)', async () => {
    const host = newHost();
    const lines: Record<string, unknown>[] = [];
    const captured = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
    const driver = new FakeComputeDriver();
    driver.holdSpawns();
    await startService(configFor(host), driver, undefined, captured);
    const uuid = randomUUID();
    await client.send(host, 'build', build(uuid));
    await client.waitForEvent(uuid, 'create.start');
    await new Promise((r) => setTimeout(r, 400));
    driver.releaseSpawns();
    await client.waitForEvent(uuid, 'create.end');
    const built = lines.find((l) => l.msg === 'instance built' && l.uuid === uuid);
    expect(built).toMatchObject({ uuid, received_to_running_ms: expect.any(Number) });
    // From the receipt, so at least the held spawn and no less than the build's own seconds.
    expect(built!.received_to_running_ms as number).toBeGreaterThanOrEqual(400);
    expect(built!.received_to_running_ms as number).toBeGreaterThanOrEqual(Math.floor((built!.seconds as number) * 1000));
  });

  it('stop with a build in flight: the build is handed back (its request was acknowledged once recorded), the record stays BUILDING, and the next start finishes it once', async () => {
    const host = newHost();
    const config = configFor(host);
    const driver = new FakeComputeDriver();
    driver.holdSpawns();
    const first = await startService(config, driver);
    const uuid = randomUUID();
    await client.send(host, 'build', build(uuid));
    await client.waitForEvent(uuid, 'create.start');
    const outcome = await first.service.stop();
    expect(outcome).toEqual({ finished: 0, handedBack: 1 });
    await first.broker.stop();
    running.splice(0);
    expect(first.service.compute.get(uuid)).toMatchObject({ state: 'building', task: 'spawning' });
    expect(await client.depth(`novalet.compute.${host}`)).toBe(0);
    driver.releaseSpawns();
    await startService(config, driver);
    await client.waitForEvent(uuid, 'create.end');
    await new Promise((r) => setTimeout(r, 500));
    expect(driver.calls.filter((c) => c === `spawn ${uuid}`)).toHaveLength(2);
    expect((await driver.list()).filter((d) => d.uuid === uuid)).toHaveLength(1);
    expect(client.eventsOf(uuid).filter((e) => e === 'create.end')).toHaveLength(1);
    // Its create.start again, under the same id: a consumer drops the repeat.
    const starts = client.events.filter((m) => m.envelope.body.uuid === uuid && m.envelope.body.event === 'create.start').map((m) => m.envelope.id);
    expect(new Set(starts).size).toBe(1);
  });

  it('a SIGHUP reload while the service stops (applyConfig after stop) starts no heartbeats again', async () => {
    const host = newHost();
    const config = configFor(host);
    const { service, broker } = await startService(config);
    await client.waitFor('a heartbeat', () => client.reports(host).find((r) => r.envelope.body.report === 'heartbeat'), 10_000);
    await service.stop();
    service.applyConfig(config);
    const after = client.reports(host).length;
    // report_interval is 1 s: three intervals with the broker still up would carry heartbeats, were the timer started again.
    await new Promise((r) => setTimeout(r, 3500));
    expect(client.reports(host).slice(after)).toEqual([]);
    await broker.stop();
    running.splice(0);
  });

  it('sends heartbeats between full reports, with nova names', async () => {
    const host = newHost();
    await startService(configFor(host));
    const heartbeat = await client.waitFor('a heartbeat', () => client.reports(host).find((r) => r.envelope.body.report === 'heartbeat'), 10_000);
    expect(heartbeat.envelope.kind).toBe('report');
    const full = client.reports(host).find((r) => r.envelope.body.report === 'full')!;
    expect(full.envelope.body).toMatchObject({ host, hypervisor_type: 'QEMU', service: { state: 'up' }, availability_zone: 'nova', supported_instances: [['x86_64', 'qemu', 'hvm']], effective_virt_type: 'qemu' });
    expect(full.envelope.body.memory_mb_used).toBe(512);
    expect((heartbeat.envelope.body.seq as number) > (full.envelope.body.seq as number)).toBe(true);
  });
});
