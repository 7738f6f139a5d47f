/**
 * `novalet.dead` against a real, private RabbitMQ (test/support/rabbitmq.ts):
 * the one dead-letter writer (`broker.deadLetter`, used by the consumer layer
 * too), its rate-limited log lines under a flood, and the queue's bound
 * (`x-max-length` = dead_letter_max_length, the oldest dropped) on classic
 * and quorum queues, and an existing queue with other arguments used as it
 * is. Each test in a vhost of its own, so that each meets its own
 * `novalet.dead`.
 */
import { existsSync } from 'node:fs';
import { connect, type ChannelModel, type GetMessage } from 'amqplib';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Broker, DEAD_EXCHANGE_HEADER, DEAD_QUEUE_HEADER, DEAD_REASON_HEADER, DEAD_ROUTING_KEY_HEADER, type Delivery } from '../../messaging/broker.js';
import type { BrokerOptions } from '../../messaging/broker-options.js';
import type { DeadLetterCode } from '../../messaging/contracts/dead-letter.js';
import { computeKey, computeQueue, DEAD_LETTER, REQUEST_EXCHANGE, type TopologySpec } from '../../messaging/topology.js';
import { parseTransportUrl } from '../../messaging/transport-url.js';
import { ctlJson, json, waitFor, withChannel } from '../support/broker-test-kit.js';
import { capturedLogger } from '../support/captured-logger.js';
import { markedProcesses, startRabbitMq, type RabbitMqHandle } from '../support/rabbitmq.js';
import { testBrokerOptions } from '../support/test-broker-options.js';

const USER = 'dead-letter-tester';
const PASSWORD = 'dl-pw-8c2e';
const VHOSTS = ['writer', 'flood', 'classic', 'quorum', 'existing'] as const;
type Vhost = (typeof VHOSTS)[number];

let rabbit: RabbitMqHandle;
const admins = new Map<Vhost, ChannelModel>();
const brokers: Broker[] = [];

beforeAll(async () => {
  rabbit = await startRabbitMq();
  await rabbit.ctl(['add_user', USER, PASSWORD]);
  for (const vhost of VHOSTS) {
    await rabbit.ctl(['add_vhost', vhost]);
    await rabbit.ctl(['set_permissions', '-p', vhost, USER, '.*', '.*', '.*']);
    // The test's own connections are guest's, the brokers' USER's: closing the brokers' leaves the test's.
    await rabbit.ctl(['set_permissions', '-p', vhost, 'guest', '.*', '.*', '.*']);
    admins.set(vhost, await connect(`amqp://guest:guest@127.0.0.1:${rabbit.port}/${vhost}`));
  }
});

afterEach(async () => {
  await Promise.all(brokers.splice(0).map((broker) => broker.stop()));
});

afterAll(async () => {
  for (const admin of admins.values()) await admin.close().catch(() => undefined);
  if (!rabbit) return;
  await rabbit.stop();
  expect(markedProcesses(rabbit.dir)).toEqual([]);
  expect(existsSync(rabbit.dir)).toBe(false);
});

interface LogLine {
  level: number;
  msg: string;
  queue?: string;
}

function makeBroker(vhost: Vhost, spec: TopologySpec, overrides: Partial<BrokerOptions> = {}) {
  const logger = capturedLogger<LogLine>();
  const options = testBrokerOptions(parseTransportUrl(`rabbit://${USER}:${PASSWORD}@127.0.0.1:${rabbit.port}/${vhost}`), overrides);
  const broker = new Broker(options, logger.log, spec);
  brokers.push(broker);
  const deadLettered: DeadLetterCode[] = [];
  broker.on('dead-lettered', (code: DeadLetterCode) => deadLettered.push(code));
  return { broker, logger, deadLettered };
}

function admin(vhost: Vhost): ChannelModel {
  return admins.get(vhost)!;
}

async function drain(vhost: Vhost, queue: string): Promise<GetMessage[]> {
  return withChannel(admin(vhost), async (channel) => {
    const got: GetMessage[] = [];
    for (let message = await channel.get(queue, { noAck: true }); message; message = await channel.get(queue, { noAck: true })) got.push(message);
    return got;
  });
}

async function depth(vhost: Vhost, queue: string): Promise<number> {
  return (await withChannel(admin(vhost), (channel) => channel.checkQueue(queue))).messageCount;
}

interface QueueRow {
  name: string;
  type: string;
  /** rabbitmqctl's form: [name, AMQP type, value] each. */
  arguments: Array<[string, string, unknown]>;
}

/** novalet.dead's type and arguments (name → value) as the broker holds them. */
async function deadQueue(vhost: Vhost): Promise<{ type: string; arguments: Record<string, unknown> } | undefined> {
  const rows = await ctlJson<QueueRow>(rabbit, ['list_queues', '-p', vhost, 'name', 'type', 'arguments']);
  const row = rows.find((r) => r.name === DEAD_LETTER);
  return row && { type: row.type, arguments: Object.fromEntries(row.arguments.map(([name, , value]) => [name, value])) };
}

/** The dead-letter lines: a whole one counts 1, a summary the number it names. */
function deadLetterLines(lines: LogLine[]): { lines: LogLine[]; counted: number } {
  const ours = lines.filter((l) => l.msg.includes(`to ${DEAD_LETTER}`));
  const counted = ours.reduce((sum, l) => sum + (/^(\d+) more messages? (was|were) moved/.exec(l.msg) ? Number(/^(\d+)/.exec(l.msg)![1]) : 1), 0);
  return { lines: ours, counted };
}

describe('the dead-letter writer', () => {
  it('moves a delivery to novalet.dead as it came, with the contract headers and the layer\'s, confirmed; one WARN line; emits dead-lettered', async () => {
    const { broker, logger, deadLettered } = makeBroker('writer', { computeHost: 'node-w' });
    await broker.start();
    const deliveries: Delivery[] = [];
    await broker.consume(computeQueue('node-w'), (d) => void deliveries.push(d), { prefetch: 5 });
    await withChannel(admin('writer'), async (channel) => {
      channel.publish(REQUEST_EXCHANGE, computeKey('node-w'), Buffer.from('not json at all'), {
        messageId: 'm-1',
        correlationId: 'c-1',
        replyTo: 'somebody.reply',
        contentType: 'text/plain',
        headers: { 'x-sender': 'pika', 'x-novalet-error': 'forged' },
      });
    });
    await waitFor('the delivery', () => deliveries.length === 1);
    await broker.deadLetter(deliveries[0]!, 'MESSAGE_NOT_JSON', 'The message is not JSON: unexpected token at 0.', { queue: computeQueue('node-w') });
    deliveries[0]!.ack();

    const [dead] = await drain('writer', DEAD_LETTER);
    expect(dead!.content.toString()).toBe('not json at all');
    expect(dead!.properties).toMatchObject({ messageId: 'm-1', correlationId: 'c-1', replyTo: 'somebody.reply', contentType: 'text/plain', deliveryMode: 2 });
    expect(dead!.properties.headers).toEqual({
      'x-sender': 'pika',
      // The contract's headers win over a sender's.
      'x-novalet-error': 'MESSAGE_NOT_JSON',
      'x-novalet-reason': 'The message is not JSON: unexpected token at 0.',
      'x-novalet-routing-key': 'compute.node-w',
      [DEAD_REASON_HEADER]: 'The message is not JSON: unexpected token at 0.',
      [DEAD_QUEUE_HEADER]: 'novalet.compute.node-w',
      [DEAD_EXCHANGE_HEADER]: 'novalet',
      [DEAD_ROUTING_KEY_HEADER]: 'compute.node-w',
    });
    expect(deadLettered).toEqual(['MESSAGE_NOT_JSON']);
    const lines = deadLetterLines(logger.lines).lines;
    expect(lines).toEqual([
      expect.objectContaining({
        level: 40,
        queue: 'novalet.compute.node-w',
        msg: "A message from queue 'novalet.compute.node-w' with routing key 'compute.node-w' is moved to novalet.dead (MESSAGE_NOT_JSON): The message is not JSON: unexpected token at 0.",
      }),
    ]);

    // A message that never was a delivery (one that came back unroutable): no queue, no exchange header.
    await broker.deadLetter({ content: json({ n: 1 }), routingKey: 'scheduler' }, 'UNROUTABLE', 'Nobody consumes scheduler.');
    const [unroutable] = await drain('writer', DEAD_LETTER);
    expect(unroutable!.properties.contentType).toBe('application/json');
    expect(unroutable!.properties.headers).toEqual({
      'x-novalet-error': 'UNROUTABLE',
      'x-novalet-reason': 'Nobody consumes scheduler.',
      'x-novalet-routing-key': 'scheduler',
      [DEAD_REASON_HEADER]: 'Nobody consumes scheduler.',
      [DEAD_ROUTING_KEY_HEADER]: 'scheduler',
    });
    expect(deadLettered).toEqual(['MESSAGE_NOT_JSON', 'UNROUTABLE']);
  });

  it('is what the consumer layer uses: a message too large and a handler that threw are dead-lettered through it (dead-lettered emitted for each)', async () => {
    const { broker, deadLettered } = makeBroker('writer', { computeHost: 'node-c' }, { maxMessageBytes: 100 });
    await broker.start();
    await broker.consume(
      computeQueue('node-c'),
      (d) => {
        if (d.content.toString().includes('boom')) throw new Error('boom');
        d.ack();
      },
      { prefetch: 5 },
    );
    await broker.publish(REQUEST_EXCHANGE, computeKey('node-c'), json('x'.repeat(200)));
    await broker.publish(REQUEST_EXCHANGE, computeKey('node-c'), json('boom'));
    await waitFor('two dead letters', () => deadLettered.length === 2);
    expect([...deadLettered].sort()).toEqual(['HANDLER_FAILED', 'MESSAGE_TOO_LARGE']);
    const dead = await drain('writer', DEAD_LETTER);
    expect(dead.map((m) => m.properties.headers![DEAD_QUEUE_HEADER])).toEqual(['novalet.compute.node-c', 'novalet.compute.node-c']);
  });

  it('rate-limits its log lines: 5,000 bad messages make a handful of lines that count all 5,000, by code, not 5,000 lines', async () => {
    const { broker, logger, deadLettered } = makeBroker('flood', { computeHost: 'node-f' });
    await broker.start();
    const began = Date.now();
    await broker.consume(
      computeQueue('node-f'),
      async (d) => {
        const bad = d.content.toString();
        await broker.deadLetter(d, bad.startsWith('{') ? 'BODY_INVALID' : 'MESSAGE_NOT_JSON', `bad: ${bad}`, { queue: computeQueue('node-f') });
        d.ack();
      },
      { prefetch: 100 },
    );
    await withChannel(admin('flood'), async () => {
      const channel = await admin('flood').createConfirmChannel();
      for (let n = 0; n < 5000; n++) channel.publish(REQUEST_EXCHANGE, computeKey('node-f'), Buffer.from(n % 5 === 0 ? `not json ${n}` : `{"n":${n}}`));
      await channel.waitForConfirms();
      await channel.close();
    });
    await waitFor('5,000 dead letters', () => deadLettered.length === 5000, 300_000);
    await broker.stop(); // tells the count of the period still open
    const periods = Math.ceil((Date.now() - began) / 60_000);

    expect(await depth('flood', DEAD_LETTER)).toBe(5000);
    const { lines, counted } = deadLetterLines(logger.lines);
    expect(counted).toBe(5000);
    // One whole line and one summary per minute at most.
    expect(lines.length).toBeGreaterThanOrEqual(2);
    expect(lines.length).toBeLessThanOrEqual(2 * periods);
    const summary = lines.find((l) => / more messages were moved to novalet\.dead /.test(l.msg))!;
    expect(summary.msg).toMatch(/\(BODY_INVALID: \d+, MESSAGE_NOT_JSON: \d+\); each carries its reason in its x-novalet-reason header\.$/);
  }, 360_000);
});

describe('novalet.dead, bounded', () => {
  it.each([
    ['classic', false],
    ['quorum', true],
  ] as const)('is declared with x-max-length = dead_letter_max_length as a %s queue; past it the oldest are dropped', async (vhost, quorumQueues) => {
    const { broker, logger } = makeBroker(vhost, { computeHost: 'node-b' }, { deadLetterMaxLength: 3, quorumQueues });
    await broker.start();
    expect(await deadQueue(vhost)).toEqual({ type: vhost, arguments: { 'x-max-length': 3, ...(quorumQueues && { 'x-queue-type': 'quorum' }) } });
    for (let n = 1; n <= 5; n++) await broker.deadLetter({ content: json(n), routingKey: 'compute.node-b' }, 'BODY_INVALID', `number ${n}`);
    await waitFor('the queue to settle at its bound', async () => (await depth(vhost, DEAD_LETTER)) === 3);
    expect((await drain(vhost, DEAD_LETTER)).map((m) => JSON.parse(m.content.toString()))).toEqual([3, 4, 5]);
    // Declared by every process with the same arguments: no warning.
    expect(logger.lines.filter((l) => l.level >= 40 && l.msg.includes('exists with other arguments'))).toEqual([]);
  });

  it('an existing novalet.dead with other arguments (none: made before the bound) does not stop the service: used as it is, one WARN with the difference and the remedy, also after reconnections', async () => {
    await withChannel(admin('existing'), async (channel) => {
      await channel.assertExchange(DEAD_LETTER, 'fanout', { durable: true });
      await channel.assertQueue(DEAD_LETTER, { durable: true });
      await channel.bindQueue(DEAD_LETTER, DEAD_LETTER, '');
      channel.publish(DEAD_LETTER, '', json('old'));
    });
    const { broker, logger } = makeBroker('existing', { computeHost: 'node-e' }, { deadLetterMaxLength: 7 });
    const connected: unknown[] = [];
    broker.on('connected', (arg) => connected.push(arg));
    await broker.start();

    const warnings = (): LogLine[] => logger.lines.filter((l) => l.msg.includes('exists with other arguments'));
    expect(warnings()).toHaveLength(1);
    expect(warnings()[0]!.level).toBe(40);
    expect(warnings()[0]!.msg).toMatch(
      /The queue novalet\.dead on AMQP server 127\.0\.0\.1:\d+ exists with other arguments than this process declares \(x-max-length = 7, from \[oslo_messaging_rabbit\] dead_letter_max_length and rabbit_quorum_queue\): .*PRECONDITION_FAILED - inequivalent arg 'x-max-length'.*The existing queue is used as it is/,
    );
    expect(warnings()[0]!.msg).toContain('delete novalet.dead (its messages are lost');
    expect(warnings()[0]!.msg).toContain(`rabbitmqctl set_policy -p 'existing' novalet-dead '^novalet\\.dead$' '{"max-length":7}' --apply-to queues`);
    // The rest of the topology is declared: the service consumes and dead-letters.
    expect(await deadQueue('existing')).toEqual({ type: 'classic', arguments: {} });
    const got: string[] = [];
    await broker.consume(computeQueue('node-e'), (d) => {
      got.push(d.content.toString());
      d.ack();
    }, { prefetch: 1 });
    await broker.publish(REQUEST_EXCHANGE, computeKey('node-e'), json('hello'));
    await broker.deadLetter({ content: json('new'), routingKey: 'compute.node-e' }, 'BODY_INVALID', 'new');
    await waitFor('the delivery', () => got.length === 1);
    expect(await depth('existing', DEAD_LETTER)).toBe(2);

    // A reconnection meets the same queue: no second warning.
    expect(await closeConnections('existing')).toBe(1);
    await waitFor('the reconnection', () => connected.length === 2, 30_000);
    expect(connected[1]).toEqual({ reconnect: true });
    expect(warnings()).toHaveLength(1);
  });
});

/** Closes the brokers' connections to `vhost` from the server side; how many. */
async function closeConnections(vhost: Vhost): Promise<number> {
  // The table form: close_connection takes the pid as <node.x.y.z>, not JSON's #PID<...>.
  const table = await rabbit.ctl(['list_connections', 'pid', 'user', 'vhost', '-q', '--no-table-headers']);
  const ours = table.split('\n').map((row) => row.split('\t')).filter(([, user, where]) => user === USER && where === vhost);
  for (const [pid] of ours) await rabbit.ctl(['close_connection', pid!, 'closed by the test']);
  return ours.length;
}
