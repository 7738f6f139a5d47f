import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseConfigText } from '../../config/load-config.js';
import { NovaletError } from '../../config/novalet-error.js';
import { brokerOptionsFrom, readTlsFiles } from '../../messaging/broker-options.js';
import { computeKey, computeQueue, instanceEventKey, reportKey } from '../../messaging/topology.js';
import { describeAddress, parseTransportUrl } from '../../messaging/transport-url.js';

function failure(run: () => unknown): NovaletError {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(NovaletError);
    return error as NovaletError;
  }
  throw new Error('expected a NovaletError');
}

describe('parseTransportUrl ([DEFAULT] transport_url, as oslo.messaging reads it)', () => {
  it("unset is oslo's default, rabbit://guest:guest@localhost:5672/", () => {
    expect(parseTransportUrl(null)).toEqual([{ host: 'localhost', port: 5672, username: 'guest', password: 'guest', vhost: '/' }]);
  });

  it('reads one host with credentials, port and vhost', () => {
    expect(parseTransportUrl('rabbit://nova:s3cret@rmq1:5673/nova')).toEqual([{ host: 'rmq1', port: 5673, username: 'nova', password: 's3cret', vhost: 'nova' }]);
  });

  it('reads a cluster: credentials per host, a host without them takes the previous host’s, guest for a first without', () => {
    expect(parseTransportUrl('rabbit://a:p@h1:5672,h2,b:q@h3:5674/vh')).toEqual([
      { host: 'h1', port: 5672, username: 'a', password: 'p', vhost: 'vh' },
      { host: 'h2', port: 5672, username: 'a', password: 'p', vhost: 'vh' },
      { host: 'h3', port: 5674, username: 'b', password: 'q', vhost: 'vh' },
    ]);
    expect(parseTransportUrl('rabbit://h1,u:v@h2/').map((a) => [a.username, a.password])).toEqual([
      ['guest', 'guest'],
      ['u', 'v'],
    ]);
  });

  it('defaults the port to 5672 and the vhost to /, and percent-decodes the vhost', () => {
    for (const url of ['rabbit://h', 'rabbit://h/', 'rabbit://h//', 'rabbit://h/%2F', 'rabbit://h:5672/?ssl=1', 'rabbit://h/#x']) {
      expect(parseTransportUrl(url), url).toEqual([{ host: 'h', port: 5672, username: 'guest', password: 'guest', vhost: '/' }]);
    }
    expect(parseTransportUrl('rabbit://h/a%20b%2Fc')[0]!.vhost).toBe('a b/c');
  });

  it("percent-decodes user and password as Python's unquote (a stray % stays)", () => {
    const [a] = parseTransportUrl('rabbit://n%C3%B6va:p%40ss%3Aw%2Fd%zz@h/');
    expect([a!.username, a!.password]).toEqual(['növa', 'p@ss:w/d%zz']);
    expect(parseTransportUrl('rabbit://nova@h/')[0]).toMatchObject({ username: 'nova', password: '' });
  });

  it('reads IPv6 addresses in brackets, and names them so', () => {
    const [a, b] = parseTransportUrl('rabbit://u:p@[::1]:5673,[fe80::1%eth0]/');
    expect(a).toMatchObject({ host: '::1', port: 5673 });
    expect(b).toMatchObject({ host: 'fe80::1%eth0', port: 5672, username: 'u' });
    expect(describeAddress(a!)).toBe('[::1]:5673');
  });

  it('takes the scheme in any case, and no host as oslo does (localhost)', () => {
    expect(parseTransportUrl('RABBIT://h:1/')[0]).toMatchObject({ host: 'h', port: 1 });
    expect(parseTransportUrl('rabbit:///')).toEqual(parseTransportUrl(null));
  });

  it('describeAddress is host:port, never the credentials', () => {
    expect(describeAddress(parseTransportUrl('rabbit://nova:s3cret@rmq1:5673/')[0]!)).toBe('rmq1:5673');
  });

  const bad: Array<[string, RegExp]> = [
    ['amqp://nova:pw-secret@h/', /scheme is 'amqp'.*rabbit:\/\//],
    ['nova:pw-secret@h:5672', /does not start with rabbit:\/\//],
    ['rabbit://nova:pw-secret@h:99999/', /port of the host is not a number from 1 to 65535/],
    ['rabbit://nova:pw-secret@h:0/', /port of the host/],
    ['rabbit://nova:pw-secret@h:/', /port of the host/],
    ['rabbit://nova:pw-secret@h:56x/', /port of the host/],
    ['rabbit://nova:pw-secret@:5672/', /the host has no host name/],
    ['rabbit://nova:pw-secret@h1,,h2/', /host 2 of 3 is empty/],
    ['rabbit://nova:pw-secret@h1,/', /host 2 of 2 is empty/],
    ['rabbit://nova:pw-secret@::1/', /IPv6 address without brackets/],
    ['rabbit://nova:pw-secret@[::1/', /does not close it/],
    ['rabbit://nova:pw-secret@[::1]x/', /not :port/],
    ['rabbit://nova:pw-secret@[nothost]/', /not an IPv6 address/],
    ['rabbit://nova:pw-secret@h ost/', /characters a host name cannot have/],
  ];
  for (const [url, problem] of bad) {
    it(`refuses ${url.replace('pw-secret', '***')}, naming the option, the problem and what is allowed, the password masked`, () => {
      const error = failure(() => parseTransportUrl(url));
      expect(error.code).toBe('TRANSPORT_URL_INVALID');
      expect(error.message).toMatch(/^\[DEFAULT\] transport_url '.*' is not valid: /);
      expect(error.message).toMatch(problem);
      expect(error.message).toContain('rabbit://user:password@host:port');
      expect(error.message).not.toContain('pw-secret');
      expect(error.message).toContain('***');
    });
  }

  it('never quotes a piece of the authority, where a password with a / would have its tail', () => {
    const error = failure(() => parseTransportUrl('rabbit://nova:sec/ret-xyz@h/'));
    expect(error.message).toContain("'rabbit://nova:***@h/'");
    expect(error.message).not.toMatch(/sec|ret-xyz/);
  });
});

describe('topology names', () => {
  it('are the wire contract', () => {
    expect([computeQueue('node1.example.com'), computeKey('node1'), reportKey('node1'), instanceEventKey('u-1', 'create.end')]).toEqual([
      'novalet.compute.node1.example.com',
      'compute.node1',
      'host.node1.report',
      'instance.u-1.create.end',
    ]);
  });

  it("refuse a host that would be a wildcard, empty, too long or hold whitespace, naming [DEFAULT] host", () => {
    for (const host of ['*', 'a.#', '', 'x'.repeat(201), 'a b', 'a\nb']) {
      const error = failure(() => computeQueue(host));
      expect(error.code).toBe('AMQP_NAME_INVALID');
      expect(error.message).toContain('[DEFAULT] host');
    }
    expect(failure(() => instanceEventKey('u', '#')).code).toBe('AMQP_NAME_INVALID');
  });
});

describe('brokerOptionsFrom', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'novalet-broker-options-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('takes transport_url, rpc_response_timeout and [oslo_messaging_rabbit]', () => {
    const config = parseConfigText(
      [
        '[DEFAULT]',
        'transport_url = rabbit://nova:pw@r1:5673,r2/nova',
        'rpc_response_timeout = 7',
        '[oslo_messaging_rabbit]',
        'heartbeat_timeout_threshold = 0',
        'rabbit_retry_interval = 2',
        'rabbit_retry_backoff = 3',
        'rabbit_interval_max = 9',
        'rabbit_qos_prefetch_count = 5',
        'rabbit_quorum_queue = true',
        'max_message_size = 2048',
        'dead_letter_max_length = 250',
        '',
      ].join('\n'),
      '/x.conf',
    ).values;
    // A random source that keeps the order: the shuffle is the next test's.
    expect(brokerOptionsFrom(config, () => 0.999)).toEqual({
      addresses: [
        { host: 'r1', port: 5673, username: 'nova', password: 'pw', vhost: 'nova' },
        { host: 'r2', port: 5672, username: 'nova', password: 'pw', vhost: 'nova' },
      ],
      heartbeatSeconds: 0,
      retryIntervalSeconds: 2,
      retryBackoffSeconds: 3,
      intervalMaxSeconds: 9,
      prefetch: 5,
      quorumQueues: true,
      tls: null,
      maxMessageBytes: 2048,
      rpcTimeoutSeconds: 7,
      deadLetterMaxLength: 250,
    });
  });

  it('shuffles the hosts of a cluster once, as oslo.messaging does, so that compute hosts spread over its nodes', () => {
    const config = parseConfigText('[DEFAULT]\ntransport_url = rabbit://nova:pw@r1,r2,r3/\n', '/x.conf').values;
    const hosts = (random: () => number) => brokerOptionsFrom(config, random).addresses.map((a) => a.host);
    expect(hosts(() => 0.999)).toEqual(['r1', 'r2', 'r3']);
    expect(hosts(() => 0)).toEqual(['r2', 'r3', 'r1']);
    // Every order comes out of Math.random over enough connections; each host keeps its credentials.
    const orders = new Set(Array.from({ length: 200 }, () => hosts(Math.random).join(',')));
    expect(orders.size).toBe(6);
    expect(brokerOptionsFrom(config).addresses.every((a) => a.username === 'nova' && a.password === 'pw')).toBe(true);
  });

  it("defaults to oslo's: localhost, heartbeat 60, retry 1 + 2 up to 30, classic queues, no TLS; novalet.dead bounded at 10,000", () => {
    expect(brokerOptionsFrom(parseConfigText('', '/x.conf').values)).toMatchObject({
      addresses: [{ host: 'localhost', port: 5672 }],
      heartbeatSeconds: 60,
      retryIntervalSeconds: 1,
      retryBackoffSeconds: 2,
      intervalMaxSeconds: 30,
      quorumQueues: false,
      tls: null,
      rpcTimeoutSeconds: 60,
      deadLetterMaxLength: 10000,
    });
  });

  it('with ssl, checks the TLS files at once, naming the option and the file', () => {
    const cert = path.join(dir, 'client.pem');
    writeFileSync(cert, '-----BEGIN CERTIFICATE-----\n');
    const conf = (lines: string[]) => parseConfigText(['[oslo_messaging_rabbit]', 'ssl = true', ...lines, ''].join('\n'), '/x.conf').values;
    expect(brokerOptionsFrom(conf([`ssl_cert_file = ${cert}`])).tls).toEqual({ caFile: '', certFile: cert, keyFile: '' });
    // Without a key file the key is looked for in the certificate file, as Python's ssl does.
    expect(readTlsFiles({ caFile: '', certFile: cert, keyFile: '' })).toEqual({ cert: Buffer.from('-----BEGIN CERTIFICATE-----\n'), key: Buffer.from('-----BEGIN CERTIFICATE-----\n') });

    const missing = failure(() => brokerOptionsFrom(conf([`ssl_ca_file = ${dir}/nope.pem`])));
    expect(missing.code).toBe('BROKER_TLS_FILE_UNREADABLE');
    expect(missing.message).toContain(`[oslo_messaging_rabbit] ssl_ca_file = '${dir}/nope.pem' cannot be read: ENOENT`);
    const directory = failure(() => brokerOptionsFrom(conf([`ssl_key_file = ${dir}`])));
    expect(directory.message).toContain(`ssl_key_file = '${dir}' is not a regular file`);
  });

  it('refuses a bad transport_url', () => {
    expect(failure(() => brokerOptionsFrom(parseConfigText('[DEFAULT]\ntransport_url = kafka://h/\n', '/x.conf').values)).code).toBe('TRANSPORT_URL_INVALID');
  });
});
