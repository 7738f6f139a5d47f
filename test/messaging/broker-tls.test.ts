/**
 * `[oslo_messaging_rabbit] ssl`, `ssl_ca_file`, `ssl_cert_file` and
 * `ssl_key_file` against a real, private RabbitMQ with a TLS listener that
 * requires a client certificate (test/support/rabbitmq.ts), with
 * certificates made for the file (test/support/test-pki.ts).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { connect, type ChannelModel } from 'amqplib';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Broker } from '../../messaging/broker.js';
import type { BrokerTls } from '../../messaging/broker-options.js';
import { EVENT_EXCHANGE, reportKey } from '../../messaging/topology.js';
import { parseTransportUrl } from '../../messaging/transport-url.js';
import { capturedLogger } from '../support/captured-logger.js';
import { markedProcesses, startRabbitMq, type RabbitMqHandle } from '../support/rabbitmq.js';
import { testBrokerOptions } from '../support/test-broker-options.js';
import { makeTestPki, type TestPki } from '../support/test-pki.js';

let pkiDir: string;
let pki: TestPki;
let rabbit: RabbitMqHandle;
let admin: ChannelModel;
const brokers: Broker[] = [];

beforeAll(async () => {
  pkiDir = mkdtempSync(path.join(tmpdir(), 'novalet-pki-'));
  pki = makeTestPki(pkiDir);
  rabbit = await startRabbitMq({ tls: { caFile: pki.caFile, certFile: pki.serverCertFile, keyFile: pki.serverKeyFile, requireClientCertificate: true } });
  admin = await connect(rabbit.url);
}, 120_000);

afterEach(async () => {
  await Promise.all(brokers.splice(0).map((broker) => broker.stop()));
});

afterAll(async () => {
  await admin?.close().catch(() => undefined);
  if (rabbit) {
    await rabbit.stop();
    expect(markedProcesses(rabbit.dir)).toEqual([]);
  }
  rmSync(pkiDir, { recursive: true, force: true });
});

interface LogLine {
  level: number;
  msg: string;
}

function tlsBroker(tls: BrokerTls) {
  const logger = capturedLogger<LogLine>();
  const options = testBrokerOptions(parseTransportUrl(`rabbit://guest:guest@127.0.0.1:${rabbit.tlsPort}/`), { tls });
  const broker = new Broker(options, logger.log, {});
  brokers.push(broker);
  return { broker, lines: () => logger.lines };
}

/** The broker's view of its client connections: whether each is TLS, and the subject of the client's certificate. */
async function tlsConnections(): Promise<{ ssl: boolean; peer_cert_subject: string }[]> {
  return JSON.parse(await rabbit.ctl(['list_connections', 'ssl', 'peer_cert_subject', '--formatter', 'json', '-q'])) as { ssl: boolean; peer_cert_subject: string }[];
}

/** A publish through the broker, read back from a queue of the test's own: the TLS connection carries messages. */
async function roundTrip(broker: Broker, host: string): Promise<void> {
  const channel = await admin.createChannel();
  try {
    const { queue } = await channel.assertQueue('', { exclusive: true });
    await channel.bindQueue(queue, EVENT_EXCHANGE, reportKey(host));
    await broker.publish(EVENT_EXCHANGE, reportKey(host), Buffer.from(JSON.stringify({ over: 'tls' })));
    const got = await channel.get(queue, { noAck: true });
    expect(got && JSON.parse(got.content.toString())).toEqual({ over: 'tls' });
  } finally {
    await channel.close();
  }
}

async function refusedWith(tls: BrokerTls, reason: RegExp): Promise<void> {
  const { broker, lines } = tlsBroker(tls);
  const controller = new AbortController();
  const starting = broker.start(controller.signal).catch((error: Error) => error);
  const deadline = Date.now() + 20_000;
  while (lines().filter((l) => l.msg.includes('is unreachable')).length < 2) {
    if (Date.now() > deadline) throw new Error(`no two refusals logged: ${JSON.stringify(lines())}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  expect(broker.state).not.toBe('connected');
  controller.abort(new Error('the test gave up'));
  expect(((await starting) as Error).message).toBe('the test gave up');
  const refused = lines().filter((l) => l.msg.includes('is unreachable'));
  expect(refused[0]!.msg).toMatch(new RegExp(`^\\[[^\\]]+\\] AMQP server on 127\\.0\\.0\\.1:${rabbit.tlsPort} is unreachable: .*Trying again in 1 seconds\\.$`));
  expect(refused[0]!.msg).toMatch(reason);
}

describe('the broker layer over TLS (ssl = true)', () => {
  it('with ssl_ca_file, ssl_cert_file and ssl_key_file: connects to the TLS listener with its client certificate and carries messages', async () => {
    const { broker } = tlsBroker({ caFile: pki.caFile, certFile: pki.clientCertFile, keyFile: pki.clientKeyFile });
    await broker.start();
    expect(broker.state).toBe('connected');
    expect(broker.address).toBe(`127.0.0.1:${rabbit.tlsPort}`);
    const connections = await tlsConnections();
    expect(connections.filter((c) => c.ssl)).toEqual([{ ssl: true, peer_cert_subject: 'CN=novalet-client' }]);
    await roundTrip(broker, 'tls-a');
  });

  it('without ssl_key_file, takes the key from ssl_cert_file, as Python\'s ssl does for oslo', async () => {
    const { broker } = tlsBroker({ caFile: pki.caFile, certFile: pki.clientCombinedFile, keyFile: '' });
    await broker.start();
    expect((await tlsConnections()).filter((c) => c.ssl)).toEqual([{ ssl: true, peer_cert_subject: 'CN=novalet-client' }]);
    await roundTrip(broker, 'tls-b');
  });

  it('refuses a broker whose certificate ssl_ca_file did not sign: not connected, the reason logged as oslo does, retried', async () => {
    // RabbitMQ sends its CA along with its certificate: Node names it a self-signed certificate in the chain.
    await refusedWith({ caFile: pki.otherCaFile, certFile: pki.clientCertFile, keyFile: pki.clientKeyFile }, /is unreachable: the broker's TLS certificate is not trusted: [^;]+ \((SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY_LEAF_SIGNATURE)\); \[oslo_messaging_rabbit\] ssl_ca_file must name the CA that signed it\. Trying/);
    expect((await tlsConnections()).filter((c) => c.ssl)).toEqual([]);
  });

  it("without ssl_ca_file, checks the broker's certificate against the system's CAs (which do not have the test CA)", async () => {
    await refusedWith({ caFile: '', certFile: pki.clientCertFile, keyFile: pki.clientKeyFile }, /the broker's TLS certificate is not trusted: .*ssl_ca_file/);
  });

  it('without a client certificate, a broker that requires one refuses the handshake: logged and retried', async () => {
    // One line with OpenSSL's reason, not its message (which has a source path and a newline in it).
    await refusedWith({ caFile: pki.caFile, certFile: '', keyFile: '' }, /is unreachable: the TLS handshake failed: tlsv13 alert certificate required \(ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED\)\. Trying/);
    expect((await tlsConnections()).filter((c) => c.ssl)).toEqual([]);
  });
});
