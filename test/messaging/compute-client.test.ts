/**
 * ComputeClient against a real RabbitMQ (a private one on 127.0.0.1) and
 * the compute service on the fake driver: each cast does what it says (its
 * event follows), each call answers typed, a host's fault comes back as a
 * ComputeReplyError with its code, message and remedy, a request the host
 * would dead-letter is refused before it is sent, and what comes back that
 * is not a reply (a responder of the test's own, on amqplib) is
 * RPC_REPLY_INVALID. The reports the service sends on the bus pass
 * validateCapabilityReport.
 */
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import amqp from 'amqplib';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ComputeService } from '../../agent/compute-service.js';
import { instanceView } from '../../agent/instance-view.js';
import { ServiceMetrics } from '../../agent/metrics.js';
import { loadConfig } from '../../config/load-config.js';
import { createLogger } from '../../config/logger.js';
import type { NovaletConfig } from '../../config/novalet-config.js';
import { Broker, type PublishOptions } from '../../messaging/broker.js';
import { brokerOptionsFrom } from '../../messaging/broker-options.js';
import { ComputeClient, ComputeReplyError, type ComputeInstanceView } from '../../messaging/compute-client.js';
import { validateCapabilityReport } from '../../messaging/contracts/capability-report-check.js';
import { buildBody } from '../support/agent-harness.js';
import { BusClient } from '../support/bus-client.js';
import { FAKE_CAPABILITIES, FakeComputeDriver } from '../support/fake-compute-driver.js';
import { startRabbitMq, type RabbitMqHandle } from '../support/rabbitmq.js';

/** A Broker that keeps the options of each publish: what the client asked of the broker layer, then published for real. */
class RecordingBroker extends Broker {
  readonly published: { exchange: string; routingKey: string; options: PublishOptions }[] = [];
  override publish(exchange: string, routingKey: string, content: Buffer, options: PublishOptions = {}): Promise<void> {
    this.published.push({ exchange, routingKey, options });
    return super.publish(exchange, routingKey, content, options);
  }
}

let rabbit: RabbitMqHandle;
let bus: BusClient;
let clientBroker: RecordingBroker;
let client: ComputeClient;
let amqpModel: amqp.ChannelModel;
const dirs: string[] = [];
const running: { service: ComputeService; broker: Broker }[] = [];
const log = createLogger({ name: 'compute-client-test' });

function configFor(host: string): NovaletConfig {
  const dir = mkdtempSync(path.join(tmpdir(), 'nvl-client-'));
  dirs.push(dir);
  mkdirSync(path.join(dir, 'images'));
  writeFileSync(path.join(dir, 'images', 'vmlinuz'), 'kernel');
  const file = path.join(dir, 'novalet.conf');
  writeFileSync(
    file,
    ['[DEFAULT]', `host = ${host}`, `state_path = ${dir}`, `transport_url = ${rabbit.transportUrl}`, 'report_interval = 1', 'graceful_shutdown_timeout = 1', '[compute]', `image_dir = ${path.join(dir, 'images')}`].join('\n'),
  );
  return loadConfig({ configFiles: [file] }).values;
}

async function startService(host: string) {
  const config = configFor(host);
  const broker = new Broker(brokerOptionsFrom(config), log, { computeHost: host });
  const driver = new FakeComputeDriver();
  const { cpu: _cpu, ...capabilities } = FAKE_CAPABILITIES;
  const service = new ComputeService({
    config,
    driver,
    broker,
    log,
    metrics: new ServiceMetrics(),
    capabilities,
    service: { state: 'up', disabled_reason: null },
    inventory: async () => ({ vcpus: 4, memoryMb: 2048, localGb: 40 }),
  });
  await broker.start();
  await service.load();
  await service.reconcile();
  await service.serve();
  running.push({ service, broker });
  return { service, driver };
}


const newHost = () => `cli-${randomUUID().slice(0, 8)}`;

/** A stand-in for a compute host on amqplib: answers each call on compute.<host> with `answer(kind)` as raw bytes. */
async function responder(host: string, answer: (kind: string) => Buffer): Promise<{ received: amqp.ConsumeMessage[] }> {
  const channel = await amqpModel.createChannel();
  const queue = await channel.assertQueue('', { exclusive: true, autoDelete: true });
  await channel.bindQueue(queue.queue, 'novalet', `compute.${host}`);
  const received: amqp.ConsumeMessage[] = [];
  await channel.consume(
    queue.queue,
    (m) => {
      if (!m) return;
      received.push(m);
      const kind = (JSON.parse(m.content.toString('utf8')) as { kind: string }).kind;
      if (m.properties.replyTo) channel.sendToQueue(m.properties.replyTo as string, answer(kind), { correlationId: m.properties.correlationId as string });
    },
    { noAck: true },
  );
  return { received };
}

const reply = (body: unknown, kind = 'reply') => Buffer.from(JSON.stringify({ version: 1, kind, id: randomUUID(), sent_at: new Date().toISOString(), body }));

beforeAll(async () => {
  rabbit = await startRabbitMq();
  bus = await BusClient.connect(rabbit.url);
  amqpModel = await amqp.connect(rabbit.url);
  clientBroker = new RecordingBroker(brokerOptionsFrom(configFor('the-client')), log, {});
  await clientBroker.start();
  client = new ComputeClient(clientBroker, { timeoutMs: 20_000 });
}, 120_000);

afterAll(async () => {
  await clientBroker?.stop();
  await amqpModel?.close().catch(() => undefined);
  await bus?.close();
  await rabbit?.stop();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
}, 60_000);

afterEach(async () => {
  for (const { service, broker } of running.splice(0)) {
    await service.stop();
    await broker.stop();
  }
});

describe('ComputeClient', () => {
  it('build, show, list, console, stop, start, reboot, delete: each cast its event, each call its typed answer', async () => {
    const host = newHost();
    const { service, driver } = await startService(host);
    const uuid = randomUUID();
    const id = await client.build(host, buildBody(uuid));
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    await bus.waitForEvent(uuid, 'create.end');

    const shown = await client.show(host, uuid);
    expect(shown).toMatchObject({ uuid, host, state: 'active', virt_type: 'qemu', fault: null, flavor: { vcpus: 1, memory_mb: 256, root_gb: 1, name: 'm1.tiny' } });
    // The host's own view of its record (agent/instance-view.ts), typed as the client's: the two shapes agree at compile time and here.
    const view: ComputeInstanceView = instanceView((await service.compute.get(uuid))!);
    expect(shown).toEqual(view);
    expect((await client.list(host)).map((i) => i.uuid)).toEqual([uuid]);
    const console = await client.console(host, uuid, { lines: 5 });
    expect(console.uuid).toBe(uuid);
    expect(console.lines.join('\n')).toContain('NOVALET-TEST-GUEST-READY');

    await client.stop(host, uuid);
    expect((await bus.waitForEvent(uuid, 'power.off')).envelope.body.state).toBe('stopped');
    await client.start(host, uuid);
    expect((await bus.waitForEvent(uuid, 'power.on')).envelope.body.state).toBe('active');
    await client.reboot(host, uuid, 'HARD');
    expect((await bus.waitForEvent(uuid, 'reboot.end')).envelope.body).toMatchObject({ state: 'active' });
    await client.delete(host, uuid);
    await bus.waitForEvent(uuid, 'delete.end');
    expect(driver.calls.filter((c) => c.includes(uuid))).toEqual([`spawn ${uuid}`, `powerOff ${uuid} 60000`, `powerOn ${uuid}`, `reboot HARD ${uuid}`, `destroy ${uuid}`]);
    expect(await client.list(host)).toEqual([]);
  });

  it("a host's fault rejects the call with its code, message and remedy", async () => {
    const host = newHost();
    await startService(host);
    const uuid = randomUUID();
    const error = await client.show(host, uuid).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ComputeReplyError);
    const fault = error as ComputeReplyError;
    expect(fault).toMatchObject({ host, kind: 'show', code: 'INSTANCE_NOT_FOUND' });
    expect(fault.fault.message).toContain(uuid);
    expect(fault.remedy.length).toBeGreaterThan(10);
    expect(fault.message).toBe(`${fault.fault.message} ${fault.remedy}`);
    await expect(client.console(host, uuid)).rejects.toMatchObject({ code: 'INSTANCE_NOT_FOUND' });
  });

  it('the same build id twice is one instance: the id is the envelope id the host keys repeats on', async () => {
    const host = newHost();
    const { driver } = await startService(host);
    const uuid = randomUUID();
    const id = randomUUID();
    expect(await client.build(host, buildBody(uuid), { id })).toBe(id);
    expect(await client.build(host, buildBody(uuid), { id })).toBe(id);
    await bus.waitForEvent(uuid, 'create.end');
    await client.list(host);
    expect(driver.calls.filter((c) => c === `spawn ${uuid}`)).toHaveLength(1);
  });

  it('a cast goes to novalet with key compute.<host>, mandatory, as the envelope of the wire contract', async () => {
    const host = newHost();
    const { received } = await responder(host, () => Buffer.from(''));
    const uuid = randomUUID();
    const before = clientBroker.published.length;
    const id = await client.reboot(host, uuid, 'SOFT');
    expect(clientBroker.published.slice(before)).toEqual([{ exchange: 'novalet', routingKey: `compute.${host}`, options: { messageId: id, mandatory: true } }]);
    for (let i = 0; i < 100 && received.length === 0; i++) await new Promise((r) => setTimeout(r, 50));
    const [message] = received;
    expect(message?.properties).toMatchObject({ messageId: id, contentType: 'application/json', deliveryMode: 2 });
    expect(JSON.parse(message!.content.toString('utf8'))).toMatchObject({ version: 1, kind: 'reboot', id, body: { uuid, type: 'SOFT' } });
  });

  it('refuses before sending what the host would dead-letter, with the same reason; a host name that is no routing key too', async () => {
    const host = newHost();
    const { received } = await responder(host, () => reply({ ok: true, result: {} }));
    const sent = clientBroker.published.length;
    await expect(client.delete(host, 'not-a-uuid')).rejects.toMatchObject({ code: 'INSTANCE_SPEC_INVALID', message: expect.stringContaining("body.uuid is the string 'not-a-uuid'") });
    await expect(client.build(host, buildBody(randomUUID(), {}, { memory_mb: 1 }))).rejects.toMatchObject({ code: 'INSTANCE_SPEC_INVALID', message: expect.stringContaining('body.instance.flavor.memory_mb is 1') });
    await expect(client.console(host, randomUUID(), { lines: 0 })).rejects.toMatchObject({ code: 'INSTANCE_SPEC_INVALID', message: expect.stringContaining('body.lines is 0') });
    await expect(client.reboot(host, randomUUID(), 'soft' as 'SOFT')).rejects.toMatchObject({ code: 'INSTANCE_SPEC_INVALID', message: expect.stringContaining('body.type') });
    await expect(client.list('compute.*')).rejects.toMatchObject({ code: 'AMQP_NAME_INVALID' });
    await expect(client.stop('a#b', randomUUID())).rejects.toMatchObject({ code: 'AMQP_NAME_INVALID' });
    expect(clientBroker.published.length).toBe(sent);
    // The responder still answers what is sent, so nothing above reached it.
    await client.list(host).catch(() => undefined);
    expect(received.map((m) => (JSON.parse(m.content.toString('utf8')) as { kind: string }).kind)).toEqual(['list']);
  });

  it('what comes back and is not a reply is RPC_REPLY_INVALID, naming the host and why', async () => {
    const host = newHost();
    const answers: Record<string, Buffer> = {
      show: Buffer.from('not json'),
      list: reply({ ok: true, result: { instances: [{ uuid: 'x' }] } }),
      console: reply({ ok: true, result: { uuid: 'x', lines: 'one line' } }),
    };
    await responder(host, (kind) => answers[kind]!);
    await expect(client.show(host, randomUUID())).rejects.toMatchObject({ code: 'RPC_REPLY_INVALID', message: expect.stringMatching(new RegExp(`^The reply of compute host '${host}' to show is not one .*: The message is not JSON`)) });
    await expect(client.list(host)).rejects.toMatchObject({ code: 'RPC_REPLY_INVALID', message: expect.stringContaining('result.instances[0] is not an instance') });
    await expect(client.console(host, randomUUID())).rejects.toMatchObject({ code: 'RPC_REPLY_INVALID', message: expect.stringContaining('"lines": [strings]') });

    const other = newHost();
    const replies: Record<string, Buffer> = {
      show: reply({ ok: true, result: {} }, 'event'),
      list: reply({ ok: 'yes' }),
      console: reply({ ok: false, error: { code: 'KVM_DEVICE_MISSING', message: '/dev/kvm does not exist.', remedy: 'Load the KVM module.' } }),
    };
    await responder(other, (kind) => replies[kind]!);
    await expect(client.show(other, randomUUID())).rejects.toMatchObject({ code: 'RPC_REPLY_INVALID', message: expect.stringContaining("its envelope kind is 'event'") });
    await expect(client.list(other)).rejects.toMatchObject({ code: 'RPC_REPLY_INVALID', message: expect.stringContaining('body.ok is the string') });
    // A code from beyond the error catalogue (a KVM reason) travels as the host sent it.
    await expect(client.console(other, randomUUID())).rejects.toMatchObject({ name: 'ComputeReplyError', code: 'KVM_DEVICE_MISSING', remedy: 'Load the KVM module.' });
  });

  it('a call nobody answers ends with RPC_TIMEOUT after the client\'s timeout', async () => {
    const quick = new ComputeClient(clientBroker, { timeoutMs: 1500 });
    await expect(quick.list(newHost())).rejects.toMatchObject({ code: 'RPC_TIMEOUT', message: expect.stringContaining('1.5 seconds') });
  });

  it("the reports the service sends on the bus, full and heartbeat, pass validateCapabilityReport unchanged", async () => {
    const host = newHost();
    await startService(host);
    await bus.waitFor('a heartbeat', () => bus.reports(host).find((r) => r.envelope.body.report === 'heartbeat'), 15_000);
    const reports = bus.reports(host);
    expect(reports.map((r) => r.envelope.body.report)).toContain('full');
    for (const r of reports) {
      expect(r.envelope.kind).toBe('report');
      const checked = validateCapabilityReport(r.envelope.body);
      expect(checked).toEqual({ ok: true, value: r.envelope.body });
    }
  });
});
