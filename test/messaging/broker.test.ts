import { existsSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { connect, type Channel, type ChannelModel, type GetMessage } from 'amqplib';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Broker, DEAD_QUEUE_HEADER, DEAD_REASON_HEADER, REPLY_QUEUE_PREFIX, type Delivery } from '../../messaging/broker.js';
import type { BrokerOptions } from '../../messaging/broker-options.js';
import { computeKey, computeQueue, DEAD_LETTER, EVENT_EXCHANGE, REQUEST_EXCHANGE, reportKey, SCHEDULER_QUEUE, type TopologySpec } from '../../messaging/topology.js';
import { parseTransportUrl } from '../../messaging/transport-url.js';
import { ctlJson as ctlJsonOf, json, rejection, sleep, waitFor, withChannel as channelOf } from '../support/broker-test-kit.js';
import { capturedLogger } from '../support/captured-logger.js';
import { markedProcesses, startRabbitMq, type RabbitMqHandle } from '../support/rabbitmq.js';
import { testBrokerOptions } from '../support/test-broker-options.js';

/**
 * The broker layer against a real, private RabbitMQ (test/support/rabbitmq.ts):
 * one broker for the file, a user of its own whose password must never reach
 * a log line.
 */

const USER = 'novalet-tester';
const PASSWORD = 'Pw-9f3k/secret@x';
const LOG_KEYS = new Set(['level', 'time', 'pid', 'hostname', 'msg', 'broker', 'queue']);

let rabbit: RabbitMqHandle;
let admin: ChannelModel;
const brokers: Broker[] = [];

beforeAll(async () => {
  rabbit = await startRabbitMq();
  await rabbit.ctl(['add_user', USER, PASSWORD]);
  await rabbit.ctl(['set_permissions', '-p', '/', USER, '.*', '.*', '.*']);
  await rabbit.ctl(['add_vhost', 'quorum']);
  await rabbit.ctl(['set_permissions', '-p', 'quorum', USER, '.*', '.*', '.*']);
  admin = await connect(rabbit.url);
});

afterEach(async () => {
  await Promise.all(brokers.splice(0).map((broker) => broker.stop()));
});

afterAll(async () => {
  await admin?.close().catch(() => undefined);
  if (!rabbit) return;
  await rabbit.stop();
  // The harness leaves nothing behind: no Erlang process, epmd included, and no folder.
  expect(markedProcesses(rabbit.dir)).toEqual([]);
  expect(existsSync(rabbit.dir)).toBe(false);
});

function transportUrl(vhost = ''): string {
  return `rabbit://${USER}:${encodeURIComponent(PASSWORD)}@127.0.0.1:${rabbit.port}/${vhost}`;
}

function brokerOptions(overrides: Partial<BrokerOptions> = {}): BrokerOptions {
  return testBrokerOptions(parseTransportUrl(transportUrl()), overrides);
}

interface LogLine {
  level: number;
  msg: string;
  broker?: string;
  [key: string]: unknown;
}

function makeBroker(spec: TopologySpec, overrides: Partial<BrokerOptions> = {}) {
  const logger = capturedLogger<LogLine>();
  const broker = new Broker(brokerOptions(overrides), logger.log, spec);
  brokers.push(broker);
  const events: Array<[string, unknown]> = [];
  broker.on('connected', (arg) => events.push(['connected', arg]));
  broker.on('disconnected', (arg) => events.push(['disconnected', arg]));
  return { broker, logger, events };
}

function ctlJson<T>(args: string[]): Promise<T[]> {
  return ctlJsonOf<T>(rabbit, args);
}

function withChannel<T>(use: (channel: Channel) => Promise<T>, model: ChannelModel = admin): Promise<T> {
  return channelOf(model, use);
}

async function closeConnectionsOf(user: string): Promise<number> {
  // The table form: close_connection takes the pid as <node.x.y.z>, not JSON's #PID<...>.
  const table = await rabbit.ctl(['list_connections', 'pid', 'user', '-q', '--no-table-headers']);
  const ours = table.split('\n').map((row) => row.split('\t')).filter(([, name]) => name === user);
  for (const [pid] of ours) await rabbit.ctl(['close_connection', pid!, 'closed by the test']);
  return ours.length;
}

function expectNoSecrets(raw: string[]): void {
  expect(raw.length).toBeGreaterThan(0);
  for (const line of raw) {
    expect(line).not.toContain(PASSWORD);
    expect(line).not.toContain(encodeURIComponent(PASSWORD));
    expect(line).not.toContain('secret');
    expect(line).not.toContain(USER);
    expect(line).not.toContain('rabbit://');
    for (const key of Object.keys(JSON.parse(line) as object)) expect(LOG_KEYS, line).toContain(key);
  }
}

describe('Broker against a private RabbitMQ', () => {
  it('declares the topology at start: the exchanges, the queues it consumes, their bindings (classic durable queues)', async () => {
    const { broker, events } = makeBroker({ computeHost: 'node-a', scheduler: true });
    expect(broker.state).toBe('connecting');
    await broker.start();
    expect(broker.state).toBe('connected');
    expect(broker.address).toBe(`127.0.0.1:${rabbit.port}`);
    expect(broker.reconnects).toBe(0);
    expect(events).toEqual([['connected', { reconnect: false }]]);

    const exchanges = await ctlJson<{ name: string; type: string; durable: boolean }>(['list_exchanges', 'name', 'type', 'durable']);
    expect(exchanges).toEqual(
      expect.arrayContaining([
        { name: 'novalet', type: 'topic', durable: true },
        { name: 'novalet.events', type: 'topic', durable: true },
        { name: 'novalet.dead', type: 'fanout', durable: true },
      ]),
    );
    const queues = await ctlJson<{ name: string; type: string; durable: boolean }>(['list_queues', 'name', 'type', 'durable']);
    expect(queues.filter((q) => q.name.startsWith('novalet.')).sort((a, b) => a.name.localeCompare(b.name))).toEqual([
      { name: 'novalet.compute.node-a', type: 'classic', durable: true },
      { name: 'novalet.dead', type: 'classic', durable: true },
      { name: 'novalet.scheduler', type: 'classic', durable: true },
    ]);
    const bindings = await ctlJson<{ source_name: string; destination_name: string; routing_key: string }>(['list_bindings', 'source_name', 'destination_name', 'routing_key']);
    expect(bindings).toEqual(
      expect.arrayContaining([
        { source_name: 'novalet', destination_name: 'novalet.compute.node-a', routing_key: 'compute.node-a' },
        { source_name: 'novalet', destination_name: 'novalet.scheduler', routing_key: 'scheduler' },
        { source_name: 'novalet.dead', destination_name: 'novalet.dead', routing_key: '' },
      ]),
    );
  });

  it('declares quorum queues with rabbit_quorum_queue, and a declaration the broker refuses is logged and retried until it can be made', async () => {
    const quorum = makeBroker({ computeHost: 'node-q', scheduler: true }, { quorumQueues: true, addresses: parseTransportUrl(transportUrl('quorum')) });
    await quorum.broker.start();
    const queues = await ctlJson<{ name: string; type: string; durable: boolean }>(['list_queues', '-p', 'quorum', 'name', 'type', 'durable']);
    expect(queues.sort((a, b) => a.name.localeCompare(b.name))).toEqual([
      { name: 'novalet.compute.node-q', type: 'quorum', durable: true },
      { name: 'novalet.dead', type: 'quorum', durable: true },
      { name: 'novalet.scheduler', type: 'quorum', durable: true },
    ]);
    await quorum.broker.stop();

    // rabbit_quorum_queue turned off with the quorum queues still there: PRECONDITION_FAILED.
    const classic = makeBroker({ computeHost: 'node-q' }, { addresses: parseTransportUrl(transportUrl('quorum')) });
    let started = false;
    const starting = classic.broker.start().then(() => (started = true));
    const refused = (): LogLine | undefined => classic.logger.lines.find((l) => l.msg.includes("Declaring novalet's exchanges and queues"));
    await waitFor('the refused declaration to be logged', () => refused() !== undefined);
    expect(refused()).toMatchObject({ level: 50, broker: `127.0.0.1:${rabbit.port}` });
    expect(refused()!.msg).toMatch(/on AMQP server 127\.0\.0\.1:\d+ failed: .*PRECONDITION_FAILED.*x-queue-type.*Trying again in \d+ seconds\. A queue's type cannot change/);
    expect(started).toBe(false);

    // The operator deletes the queues, as the option's help says: the next attempt succeeds.
    const vhostAdmin = await connect(transportUrl('quorum').replace('rabbit:', 'amqp:'));
    try {
      await withChannel(async (channel) => {
        // novalet.dead first: an attempt between the two deletions then declares it anew, as the assertion below expects.
        await channel.deleteQueue('novalet.dead');
        await channel.deleteQueue('novalet.compute.node-q');
      }, vhostAdmin);
    } finally {
      await vhostAdmin.close();
    }
    await starting;
    const after = await ctlJson<{ name: string; type: string }>(['list_queues', '-p', 'quorum', 'name', 'type']);
    expect(after).toEqual(expect.arrayContaining([{ name: 'novalet.compute.node-q', type: 'classic' }, { name: 'novalet.dead', type: 'classic' }]));
  });

  it('publishes JSON, persistent unless told otherwise, and resolves once the broker confirmed', async () => {
    const { broker } = makeBroker({});
    await broker.start();
    await withChannel(async (channel) => {
      const { queue } = await channel.assertQueue('', { exclusive: true });
      await channel.bindQueue(queue, EVENT_EXCHANGE, reportKey('node-p'));
      await broker.publish(EVENT_EXCHANGE, reportKey('node-p'), json({ n: 1 }), { messageId: 'm-1', correlationId: 'c-1', headers: { 'x-a': 'b' } });
      await broker.publish(EVENT_EXCHANGE, reportKey('node-p'), json({ n: 2 }), { persistent: false, expiration: '60000' });
      const first = await channel.get(queue, { noAck: true });
      const second = await channel.get(queue, { noAck: true });
      expect(first && first.properties).toMatchObject({ contentType: 'application/json', deliveryMode: 2, messageId: 'm-1', correlationId: 'c-1', headers: { 'x-a': 'b' } });
      expect(first && JSON.parse(first.content.toString())).toEqual({ n: 1 });
      expect(second && second.properties).toMatchObject({ contentType: 'application/json', deliveryMode: 1, expiration: '60000' });
    });
    // Unroutable is fine: confirmed, not returned.
    await broker.publish(REQUEST_EXCHANGE, computeKey('nobody-here'), json({}));
  });

  it('consumes with manual acks: an unacked delivery of a lost channel is redelivered to the resumed consumer; the lost ack is a no-op', async () => {
    const { broker, logger, events } = makeBroker({ computeHost: 'node-a' });
    await broker.start();
    await withChannel((channel) => channel.purgeQueue(computeQueue('node-a')));
    const deliveries: Delivery[] = [];
    await broker.consume(computeQueue('node-a'), (delivery) => void deliveries.push(delivery), { prefetch: 10 });
    await broker.publish(REQUEST_EXCHANGE, computeKey('node-a'), json({ op: 'build' }), { messageId: 'req-1' });
    await waitFor('the delivery', () => deliveries.length === 1);
    expect(deliveries[0]).toMatchObject({ exchange: REQUEST_EXCHANGE, routingKey: 'compute.node-a', redelivered: false, properties: { messageId: 'req-1', contentType: 'application/json' } });

    expect(await closeConnectionsOf(USER)).toBe(1);
    await waitFor('the redelivery', () => deliveries.length === 2);
    expect(deliveries[1]).toMatchObject({ redelivered: true, properties: { messageId: 'req-1' } });
    expect(JSON.parse(deliveries[1]!.content.toString())).toEqual({ op: 'build' });
    expect(() => deliveries[0]!.ack()).not.toThrow();
    deliveries[1]!.ack();
    deliveries[1]!.ack(); // twice: no channel error

    expect(events.map(([name, arg]) => (name === 'connected' ? arg : name))).toEqual([{ reconnect: false }, 'disconnected', { reconnect: true }]);
    expect(broker.reconnects).toBe(1);
    const lines = logger.lines;
    expect(lines.find((l) => l.msg.includes('is unreachable'))).toMatchObject({ level: 50, broker: `127.0.0.1:${rabbit.port}` });
    expect(lines.find((l) => l.msg.includes('is unreachable'))!.msg).toMatch(
      new RegExp(`^\\[[0-9a-f-]{36}\\] AMQP server on 127\\.0\\.0\\.1:${rabbit.port} is unreachable: .*CONNECTION_FORCED - closed by the test.*\\. Trying again in 1 seconds\\.$`),
    );
    expect(lines.find((l) => l.msg.includes('Reconnected'))).toMatchObject({ level: 30 });
    expect(lines.find((l) => l.msg.includes('Reconnected'))!.msg).toMatch(
      new RegExp(`^\\[[0-9a-f-]{36}\\] Reconnected to AMQP server on 127\\.0\\.0\\.1:${rabbit.port} via \\[amqp\\] client with port \\d+\\.$`),
    );

    // Acked: nothing is left for the next consumer.
    await broker.stop();
    const { messageCount } = await withChannel((channel) => channel.checkQueue(computeQueue('node-a')));
    expect(messageCount).toBe(0);
  });

  it('honours the prefetch: with 2, a third message comes only after an ack', async () => {
    const { broker } = makeBroker({ computeHost: 'node-a' });
    await broker.start();
    await withChannel((channel) => channel.purgeQueue(computeQueue('node-a')));
    const deliveries: Delivery[] = [];
    await broker.consume(computeQueue('node-a'), (delivery) => void deliveries.push(delivery), { prefetch: 2 });
    for (const n of [1, 2, 3]) await broker.publish(REQUEST_EXCHANGE, computeKey('node-a'), json({ n }));
    await waitFor('two deliveries', () => deliveries.length === 2);
    await sleep(500);
    expect(deliveries).toHaveLength(2);
    deliveries[0]!.ack();
    await waitFor('the third delivery', () => deliveries.length === 3);
    expect(deliveries.map((d) => JSON.parse(d.content.toString()).n)).toEqual([1, 2, 3]);
    for (const d of deliveries) d.ack();
  });

  it('calls and gets the reply with its correlation id; RPC_TIMEOUT when nobody answers', async () => {
    const responder = makeBroker({ computeHost: 'node-r' });
    await responder.broker.start();
    const requests: Delivery[] = [];
    await responder.broker.consume(
      computeQueue('node-r'),
      async (request) => {
        requests.push(request);
        const { replyTo, correlationId } = request.properties;
        await responder.broker.publish('', replyTo!, json({ echo: JSON.parse(request.content.toString()) }), { correlationId: correlationId! });
        request.ack();
      },
      { prefetch: 1 },
    );
    const caller = makeBroker({});
    await caller.broker.start();
    const reply = await caller.broker.call(REQUEST_EXCHANGE, computeKey('node-r'), json({ ping: 1 }), { messageId: 'call-1' });
    expect(JSON.parse(reply.content.toString())).toEqual({ echo: { ping: 1 } });
    expect(requests).toHaveLength(1);
    expect(requests[0]!.properties.replyTo).toMatch(new RegExp(`^${REPLY_QUEUE_PREFIX.replace('.', '\\.')}`));
    expect(requests[0]!.properties.messageId).toBe('call-1');
    expect(reply.properties.correlationId).toBe(requests[0]!.properties.correlationId);
    expect(reply.properties.correlationId).toMatch(/^[0-9a-f-]{36}$/);

    // Two calls at once are told apart by their correlation ids.
    const [a, b] = await Promise.all([1, 2].map((n) => caller.broker.call(REQUEST_EXCHANGE, computeKey('node-r'), json(n))));
    expect([JSON.parse(a!.content.toString()), JSON.parse(b!.content.toString())]).toEqual([{ echo: 1 }, { echo: 2 }]);

    const began = Date.now();
    const timeout = await rejection(caller.broker.call(REQUEST_EXCHANGE, computeKey('nobody-here'), json({}), { timeoutMs: 300 }));
    expect(timeout.code).toBe('RPC_TIMEOUT');
    expect(timeout.message).toContain("routing key 'compute.nobody-here'");
    expect(Date.now() - began).toBeGreaterThanOrEqual(290);
    expect(Date.now() - began).toBeLessThan(5000);

    const controller = new AbortController();
    const aborted = caller.broker.call(REQUEST_EXCHANGE, computeKey('nobody-here'), json({}), { signal: controller.signal });
    controller.abort(new Error('shutting down'));
    expect((await rejection(aborted)).message).toBe('shutting down');
  });

  it('a publish the broker refuses (no such exchange) fails at once with BROKER_PUBLISH_FAILED, and the next publish works', async () => {
    const { broker } = makeBroker({});
    await broker.start();
    const began = Date.now();
    const error = await rejection(broker.publish('no-such-exchange', 'x', json({})));
    expect(error.code).toBe('BROKER_PUBLISH_FAILED');
    expect(error.message).toMatch(/refused the message to exchange 'no-such-exchange'.*NOT_FOUND/);
    expect(Date.now() - began).toBeLessThan(5000);
    await broker.publish(EVENT_EXCHANGE, reportKey('node-p'), json({}));
  });

  it("moves to novalet.dead, with the reason, what the handler failed on and what is larger than max_message_size", async () => {
    await withChannel((channel) => channel.purgeQueue(DEAD_LETTER));
    const { broker, logger } = makeBroker({ computeHost: 'node-d' }, { maxMessageBytes: 1024 });
    await broker.start();
    const handled: string[] = [];
    await broker.consume(
      computeQueue('node-d'),
      (delivery) => {
        const text = delivery.content.toString();
        handled.push(text.slice(0, 20));
        if (text.includes('boom')) throw new Error('boom-error');
        delivery.ack();
      },
      { prefetch: 5 },
    );
    await broker.publish(REQUEST_EXCHANGE, computeKey('node-d'), json('boom'), { messageId: 'boom-1' });
    await broker.publish(REQUEST_EXCHANGE, computeKey('node-d'), json('x'.repeat(2000)), { messageId: 'big-1' });
    await broker.publish(REQUEST_EXCHANGE, computeKey('node-d'), json('fine'));
    await waitFor('the fine message', () => handled.includes('"fine"'));
    const dead = await withChannel(async (channel) => {
      const got: GetMessage[] = [];
      await waitFor('two dead letters', async () => {
        const message = await channel.get(DEAD_LETTER, { noAck: true });
        if (message) got.push(message);
        return got.length === 2;
      });
      return got;
    });
    const byId = new Map(dead.map((m) => [m.properties.messageId as string, m]));
    expect(byId.get('boom-1')!.properties.headers).toMatchObject({ [DEAD_REASON_HEADER]: 'The handler failed: boom-error', [DEAD_QUEUE_HEADER]: 'novalet.compute.node-d' });
    expect(String(byId.get('big-1')!.properties.headers![DEAD_REASON_HEADER])).toMatch(/2002 bytes, more than \[oslo_messaging_rabbit\] max_message_size \(1024\)/);
    // The contract's headers too (docs/messages.md).
    expect(byId.get('big-1')!.properties.headers).toMatchObject({ 'x-novalet-error': 'MESSAGE_TOO_LARGE', 'x-novalet-routing-key': 'compute.node-d' });
    expect(byId.get('boom-1')!.properties.headers).toMatchObject({ 'x-novalet-error': 'HANDLER_FAILED' });
    expect(byId.get('big-1')!.content.length).toBe(2002);
    expect(handled).toEqual(['"boom"', '"fine"']); // the large one never reached the handler
    expect(logger.lines.find((l) => l.msg.includes('boom-error'))).toMatchObject({ level: 50, queue: 'novalet.compute.node-d' });
    const { messageCount } = await withChannel((channel) => channel.checkQueue(computeQueue('node-d')));
    expect(messageCount).toBe(0);
  });

  it('resumes a consumer whose queue is deleted under it: the topology is declared again and deliveries go on', async () => {
    const { broker, logger } = makeBroker({ computeHost: 'node-c' });
    await broker.start();
    const got: string[] = [];
    await broker.consume(computeQueue('node-c'), (d) => {
      got.push(d.content.toString());
      d.ack();
    }, { prefetch: 1 });
    await withChannel((channel) => channel.deleteQueue(computeQueue('node-c')));
    await waitFor('the consumer to resume', () => logger.lines.some((l) => l.msg.includes("Consuming from queue 'novalet.compute.node-c' again.")));
    expect(logger.lines.some((l) => l.msg.includes("The broker cancelled the consumer of queue 'novalet.compute.node-c'"))).toBe(true);
    await broker.publish(REQUEST_EXCHANGE, computeKey('node-c'), json('after'));
    await waitFor('the delivery after the deletion', () => got.includes('"after"'));
    expect(broker.reconnects).toBe(0);
  });

  it('with two addresses of which the first is dead, connects to the second at once', async () => {
    const deadPort = await new Promise<number>((resolve) => {
      const server = createServer().listen(0, '127.0.0.1', () => {
        const { port } = server.address() as AddressInfo;
        server.close(() => resolve(port));
      });
    });
    const url = `rabbit://${USER}:${encodeURIComponent(PASSWORD)}@127.0.0.1:${deadPort},127.0.0.1:${rabbit.port}/`;
    const { broker, logger } = makeBroker({}, { addresses: parseTransportUrl(url) });
    const began = Date.now();
    await broker.start();
    expect(Date.now() - began).toBeLessThan(3000);
    expect(broker.address).toBe(`127.0.0.1:${rabbit.port}`);
    const unreachable = logger.lines.find((l) => l.msg.includes('is unreachable'));
    expect(unreachable).toMatchObject({ level: 50, broker: `127.0.0.1:${deadPort}` });
    expect(unreachable!.msg).toMatch(new RegExp(`AMQP server on 127\\.0\\.0\\.1:${deadPort} is unreachable: .*ECONNREFUSED.*\\. Trying again in 0 seconds\\.$`));
    expectNoSecrets(logger.raw);
  });

  it('a refused login is logged without the password and retried; start() rejects with the abort reason and the broker stops', async () => {
    const url = `rabbit://${USER}:${encodeURIComponent('wrong-secret-pw')}@127.0.0.1:${rabbit.port}/`;
    const { broker, logger } = makeBroker({}, { addresses: parseTransportUrl(url) });
    const controller = new AbortController();
    const starting = broker.start(controller.signal);
    await waitFor('two refused logins', () => logger.lines.filter((l) => l.msg.includes('is unreachable')).length >= 2);
    controller.abort(new Error('operator gave up'));
    expect((await rejection(starting)).message).toBe('operator gave up');
    await waitFor('the broker to close', () => broker.state === 'closed');
    const refused = logger.lines.filter((l) => l.msg.includes('is unreachable'));
    expect(refused[0]!.msg).toMatch(/ACCESS_REFUSED.*Trying again in 1 seconds\.$/);
    expect(refused[1]!.msg).toMatch(/Trying again in 2 seconds\.$/);
    for (const line of logger.raw) expect(line).not.toContain('wrong-secret-pw');
    expectNoSecrets(logger.raw);
  });

  it('after stop() (idempotent), publish fails with BROKER_PUBLISH_FAILED and consume, call and start with BROKER_STOPPED', async () => {
    const { broker } = makeBroker({ computeHost: 'node-a' });
    await broker.start();
    await broker.consume(computeQueue('node-a'), (d) => d.ack(), { prefetch: 1 });
    await Promise.all([broker.stop(), broker.stop()]);
    await broker.stop();
    expect(broker.state).toBe('closed');
    expect(broker.address).toBeNull();
    expect((await rejection(broker.publish(EVENT_EXCHANGE, 'k', json({})))).code).toBe('BROKER_PUBLISH_FAILED');
    expect((await rejection(broker.consume(SCHEDULER_QUEUE, () => undefined, { prefetch: 1 }))).code).toBe('BROKER_STOPPED');
    expect((await rejection(broker.call(REQUEST_EXCHANGE, 'k', json({})))).code).toBe('BROKER_STOPPED');
    expect((await rejection(broker.start())).code).toBe('BROKER_STOPPED');
    const consumers = await ctlJson<{ queue_name: string }>(['list_consumers', 'queue_name']);
    expect(consumers.filter((c) => c.queue_name === 'novalet.compute.node-a')).toEqual([]);
  });

  it('consume rejects with BROKER_CONSUME_FAILED for a queue that does not exist', async () => {
    const { broker } = makeBroker({});
    await broker.start();
    const error = await rejection(broker.consume('no-such-queue', () => undefined, { prefetch: 1 }));
    expect(error.code).toBe('BROKER_CONSUME_FAILED');
    expect(error.message).toMatch(/queue 'no-such-queue'.*NOT_FOUND/);
  });

  it('logs when the broker blocks the connection (a memory alarm); a publish made then is confirmed once it unblocks', async () => {
    const { broker, logger } = makeBroker({});
    await broker.start();
    await rabbit.ctl(['set_vm_memory_high_watermark', 'absolute', '1MB']);
    try {
      let confirmed = false;
      const blockedPublish = broker.publish(EVENT_EXCHANGE, reportKey('node-p'), json('blocked')).then(() => (confirmed = true));
      await waitFor('the blocked line', () => logger.lines.some((l) => l.msg.startsWith('The broker has blocked the connection: ')));
      expect(logger.lines.find((l) => l.msg.includes('blocked the connection'))).toMatchObject({ level: 50, broker: `127.0.0.1:${rabbit.port}` });
      await sleep(300);
      expect(confirmed).toBe(false);
      await rabbit.ctl(['set_vm_memory_high_watermark', '0.4']);
      await blockedPublish;
      await waitFor('the unblocked line', () => logger.lines.some((l) => l.msg === 'The broker has unblocked the connection' && l.level === 30));
    } finally {
      await rabbit.ctl(['set_vm_memory_high_watermark', '0.4']);
    }
  });

  describe('a broker restart', () => {
    it("is survived without the caller's help: the consumer goes on, 'connected' fires with reconnect, a publish made while it is down is confirmed once it is back, oslo's log lines, no credentials logged", async () => {
      const { broker, logger, events } = makeBroker({ computeHost: 'node-b' });
      await broker.start();
      await withChannel((channel) => channel.purgeQueue(computeQueue('node-b')));
      const got: string[] = [];
      await broker.consume(computeQueue('node-b'), (d) => {
        got.push(JSON.parse(d.content.toString()));
        d.ack();
      }, { prefetch: 5 });
      await broker.publish(REQUEST_EXCHANGE, computeKey('node-b'), json('before'));
      await waitFor('the first delivery', () => got.includes('before'));

      const restarting = rabbit.restart();
      await waitFor('the disconnection', () => events.some(([name]) => name === 'disconnected'));
      expect(broker.state).toBe('connecting');
      expect(broker.address).toBeNull();
      let confirmed = false;
      const during = broker.publish(REQUEST_EXCHANGE, computeKey('node-b'), json('during'), { messageId: 'during' }).then(() => (confirmed = true));
      await restarting;
      await waitFor('the reconnection', () => events.length === 3, 30_000);
      expect(events[2]).toEqual(['connected', { reconnect: true }]);
      expect(broker.reconnects).toBe(1);
      expect(broker.state).toBe('connected');
      await during;
      expect(confirmed).toBe(true);
      await broker.publish(REQUEST_EXCHANGE, computeKey('node-b'), json('after'));
      await waitFor('the deliveries after the restart', () => got.includes('during') && got.includes('after'));

      const lines = logger.lines;
      const unreachable = lines.filter((l) => l.msg.includes('is unreachable'));
      expect(unreachable.length).toBeGreaterThanOrEqual(1);
      for (const line of unreachable) {
        expect(line).toMatchObject({ level: 50, broker: `127.0.0.1:${rabbit.port}` });
        expect(line.msg).toMatch(new RegExp(`^\\[[0-9a-f-]{36}\\] AMQP server on 127\\.0\\.0\\.1:${rabbit.port} is unreachable: .+\\. Trying again in [12] seconds\\.$`));
      }
      const reconnected = lines.filter((l) => l.msg.includes('Reconnected to AMQP server'));
      expect(reconnected).toHaveLength(1);
      expect(reconnected[0]).toMatchObject({ level: 30, broker: `127.0.0.1:${rabbit.port}` });
      expectNoSecrets(logger.raw);
    });

    it('and a crash (SIGKILL) then a start are survived as well', async () => {
      const { broker, events } = makeBroker({ computeHost: 'node-b' });
      await broker.start();
      const got: string[] = [];
      await broker.consume(computeQueue('node-b'), (d) => {
        got.push(JSON.parse(d.content.toString()));
        d.ack();
      }, { prefetch: 5 });
      rabbit.kill();
      await waitFor('the disconnection', () => events.some(([name]) => name === 'disconnected'));
      await rabbit.restart();
      await waitFor('the reconnection', () => events.length === 3, 30_000);
      expect(broker.reconnects).toBe(1);
      await broker.publish(REQUEST_EXCHANGE, computeKey('node-b'), json('after-crash'));
      await waitFor('the delivery after the crash', () => got.includes('after-crash'));
    });
  });
});
