/**
 * Mandatory publishes against a real, private RabbitMQ
 * (test/support/rabbitmq.ts): a message the broker returns (basic.return,
 * before its confirm) rejects with MESSAGE_UNROUTABLE, each return matched to
 * its own publish; and the compute host's topology with the scheduler's
 * queue, declared alike by every process, makes a reschedule routable.
 */
import { existsSync } from 'node:fs';
import { connect, type ChannelModel, type GetMessage } from 'amqplib';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Broker } from '../../messaging/broker.js';
import { computeKey, computeQueue, REQUEST_EXCHANGE, SCHEDULER_KEY, SCHEDULER_QUEUE, type TopologySpec } from '../../messaging/topology.js';
import { parseTransportUrl } from '../../messaging/transport-url.js';
import { ctlJson, json, rejection, withChannel } from '../support/broker-test-kit.js';
import { capturedLogger } from '../support/captured-logger.js';
import { markedProcesses, startRabbitMq, type RabbitMqHandle } from '../support/rabbitmq.js';
import { testBrokerOptions } from '../support/test-broker-options.js';

let rabbit: RabbitMqHandle;
let admin: ChannelModel;
const brokers: Broker[] = [];

beforeAll(async () => {
  rabbit = await startRabbitMq();
  await rabbit.ctl(['add_vhost', 'lonely']);
  await rabbit.ctl(['set_permissions', '-p', 'lonely', 'guest', '.*', '.*', '.*']);
  admin = await connect(rabbit.url);
});

afterEach(async () => {
  await Promise.all(brokers.splice(0).map((broker) => broker.stop()));
});

afterAll(async () => {
  await admin?.close().catch(() => undefined);
  if (!rabbit) return;
  await rabbit.stop();
  expect(markedProcesses(rabbit.dir)).toEqual([]);
  expect(existsSync(rabbit.dir)).toBe(false);
});

function makeBroker(spec: TopologySpec, vhost = '') {
  const broker = new Broker(testBrokerOptions(parseTransportUrl(`rabbit://guest:guest@127.0.0.1:${rabbit.port}/${vhost}`)), capturedLogger().log, spec);
  brokers.push(broker);
  return broker;
}

async function drain(queue: string): Promise<GetMessage[]> {
  return withChannel(admin, async (channel) => {
    const got: GetMessage[] = [];
    for (let message = await channel.get(queue, { noAck: true }); message; message = await channel.get(queue, { noAck: true })) got.push(message);
    return got;
  });
}

describe('mandatory publishes', () => {
  it('a mandatory message no queue takes rejects with MESSAGE_UNROUTABLE naming the exchange, the key and the remedy; one a queue takes resolves', async () => {
    const broker = makeBroker({ computeHost: 'node-m' });
    await broker.start();
    await withChannel(admin, (channel) => channel.purgeQueue(computeQueue('node-m')));

    const error = await rejection(broker.publish(REQUEST_EXCHANGE, computeKey('nobody-here'), json({ op: 'build' }), { mandatory: true }));
    expect(error.code).toBe('MESSAGE_UNROUTABLE');
    expect(error.message).toBe(
      "The broker returned the message to exchange 'novalet' with routing key 'compute.nobody-here' (NO_ROUTE): no queue is bound to that exchange with that key, so nobody would receive it. " +
        'Start the service that consumes that key (its process declares its queue), or declare the queue in the topology of this process (messaging/topology.ts).',
    );

    await broker.publish(REQUEST_EXCHANGE, computeKey('node-m'), json('kept id'), { mandatory: true, messageId: 'caller-id' });
    await broker.publish(REQUEST_EXCHANGE, computeKey('node-m'), json('no id'), { mandatory: true });
    const [kept, given] = await drain(computeQueue('node-m'));
    expect(kept!.properties.messageId).toBe('caller-id');
    // A mandatory message without one is given a message id (its return would be matched by it).
    expect(given!.properties.messageId).toMatch(/^[0-9a-f-]{36}$/);

    // The default exchange: a reply to a reply queue that is gone.
    const gone = await rejection(broker.publish('', 'novalet.reply.gone', json({}), { mandatory: true, persistent: false }));
    expect(gone.code).toBe('MESSAGE_UNROUTABLE');
    expect(gone.message).toContain("exchange '' with routing key 'novalet.reply.gone'");
  });

  it('matches each return to its own publish: 300 at once, routable and not, with and without message ids, some ids shared', async () => {
    const broker = makeBroker({ computeHost: 'node-n' });
    await broker.start();
    await withChannel(admin, (channel) => channel.purgeQueue(computeQueue('node-n')));
    const sends = Array.from({ length: 300 }, (_, n) => {
      const routable = n % 3 !== 0;
      const messageId = n % 4 === 0 ? undefined : n % 4 === 1 ? 'shared-id' : `id-${n}`;
      const key = routable ? computeKey('node-n') : computeKey('nobody-here');
      return broker.publish(REQUEST_EXCHANGE, key, json(n), { mandatory: true, ...(messageId !== undefined && { messageId }) }).then(
        () => ({ n, routable, outcome: 'confirmed' }),
        (error: { code?: string }) => ({ n, routable, outcome: error.code }),
      );
    });
    const results = await Promise.all(sends);
    for (const result of results) expect(result, `message ${result.n}`).toEqual({ n: result.n, routable: result.routable, outcome: result.routable ? 'confirmed' : 'MESSAGE_UNROUTABLE' });
    const delivered = (await drain(computeQueue('node-n'))).map((m) => JSON.parse(m.content.toString()) as number).sort((a, b) => a - b);
    expect(delivered).toEqual(results.filter((r) => r.routable).map((r) => r.n));
  });
});

describe("the compute host's topology with the scheduler's queue", () => {
  it('is declared alike by compute hosts and a scheduler at once (idempotent), and makes a mandatory reschedule routable; without it, unroutable', async () => {
    const hosts = [makeBroker({ computeHost: 'node-1', scheduler: true }), makeBroker({ computeHost: 'node-2', scheduler: true }), makeBroker({ scheduler: true })];
    await Promise.all(hosts.map((broker) => broker.start()));
    const queues = await ctlJson<{ name: string; arguments: unknown[] }>(rabbit, ['list_queues', 'name', 'arguments']);
    expect(queues.filter((q) => q.name === SCHEDULER_QUEUE)).toEqual([{ name: SCHEDULER_QUEUE, arguments: [] }]);
    await withChannel(admin, (channel) => channel.purgeQueue(SCHEDULER_QUEUE));
    await hosts[0]!.publish(REQUEST_EXCHANGE, SCHEDULER_KEY, json({ kind: 'reschedule' }), { mandatory: true });
    expect((await drain(SCHEDULER_QUEUE)).map((m) => JSON.parse(m.content.toString()))).toEqual([{ kind: 'reschedule' }]);

    // A compute host that does not declare it, where nobody else has: the reschedule comes back.
    const lonely = makeBroker({ computeHost: 'node-3' }, 'lonely');
    await lonely.start();
    expect((await rejection(lonely.publish(REQUEST_EXCHANGE, SCHEDULER_KEY, json({ kind: 'reschedule' }), { mandatory: true }))).code).toBe('MESSAGE_UNROUTABLE');
  });
});
