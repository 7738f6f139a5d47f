/**
 * BrokerOptions for tests of the broker layer against a private RabbitMQ:
 * short retries (1 s, +1 s, at most 2 s), a 10 s heartbeat, no prefetch
 * limit, classic queues, no TLS, 1 MiB messages, 30 s calls, novalet.dead
 * bounded at 10,000 (the option's default); a test sets what it is about.
 */
import type { BrokerOptions } from '../../messaging/broker-options.js';
import type { BrokerAddress } from '../../messaging/transport-url.js';

export function testBrokerOptions(addresses: BrokerAddress[], overrides: Partial<BrokerOptions> = {}): BrokerOptions {
  return {
    addresses,
    heartbeatSeconds: 10,
    retryIntervalSeconds: 1,
    retryBackoffSeconds: 1,
    intervalMaxSeconds: 2,
    prefetch: 0,
    quorumQueues: false,
    tls: null,
    maxMessageBytes: 1 << 20,
    rpcTimeoutSeconds: 30,
    deadLetterMaxLength: 10_000,
    ...overrides,
  };
}
