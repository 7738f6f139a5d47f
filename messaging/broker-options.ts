import { readFileSync, statSync } from 'node:fs';
import type { NovaletConfig } from '../config/novalet-config.js';
import { NovaletError } from '../config/novalet-error.js';
import { quoteForMessage } from '../config/quote-for-message.js';
import { parseTransportUrl, type BrokerAddress } from './transport-url.js';

/** Files of `[oslo_messaging_rabbit] ssl_*_file`; '' = not set. */
export interface BrokerTls {
  caFile: string;
  certFile: string;
  keyFile: string;
}

/** What the broker layer (messaging/broker.ts) runs with, from nova.conf and novalet's own options. */
export interface BrokerOptions {
  addresses: BrokerAddress[];
  /** 0 disables heartbeats. */
  heartbeatSeconds: number;
  retryIntervalSeconds: number;
  retryBackoffSeconds: number;
  intervalMaxSeconds: number;
  /** `rabbit_qos_prefetch_count` as configured (0: no limit); each consumer gives its own to consume(). */
  prefetch: number;
  quorumQueues: boolean;
  tls: null | BrokerTls;
  maxMessageBytes: number;
  rpcTimeoutSeconds: number;
  /** `dead_letter_max_length`: the `x-max-length` of `novalet.dead`. */
  deadLetterMaxLength: number;
}

/**
 * The options of `[DEFAULT] transport_url, rpc_response_timeout` and
 * `[oslo_messaging_rabbit]`. With `ssl = true` the TLS files are read once
 * here, so that a missing one stops the service at start-up rather than at
 * its first connection; the broker layer reads them again at each connection
 * (a renewed certificate is taken without a restart).
 */
export function brokerOptionsFrom(config: NovaletConfig, random: () => number = Math.random): BrokerOptions {
  const rabbit = config.oslo_messaging_rabbit;
  const tls = rabbit.ssl ? { caFile: rabbit.ssl_ca_file, certFile: rabbit.ssl_cert_file, keyFile: rabbit.ssl_key_file } : null;
  if (tls) readTlsFiles(tls);
  return {
    addresses: shuffled(parseTransportUrl(config.DEFAULT.transport_url), random),
    heartbeatSeconds: rabbit.heartbeat_timeout_threshold,
    retryIntervalSeconds: rabbit.rabbit_retry_interval,
    retryBackoffSeconds: rabbit.rabbit_retry_backoff,
    intervalMaxSeconds: rabbit.rabbit_interval_max,
    prefetch: rabbit.rabbit_qos_prefetch_count,
    quorumQueues: rabbit.rabbit_quorum_queue,
    tls,
    maxMessageBytes: rabbit.max_message_size,
    rpcTimeoutSeconds: config.DEFAULT.rpc_response_timeout,
    deadLetterMaxLength: rabbit.dead_letter_max_length,
  };
}

/**
 * The hosts of a cluster in a random order, as oslo.messaging shuffles them
 * once per connection so that the compute hosts spread over the cluster's
 * nodes instead of all crowding the first; they are then tried in turn
 * (kombu's round-robin failover). Fisher–Yates.
 */
function shuffled<T>(items: T[], random: () => number): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/** The PEM contents for node:tls; a file that is set must be a readable regular file. */
export function readTlsFiles(tls: BrokerTls): { ca?: Buffer; cert?: Buffer; key?: Buffer } {
  const read = (option: string, file: string): Buffer | undefined => {
    if (file === '') return undefined;
    const named = `[oslo_messaging_rabbit] ${option} = ${quoteForMessage(file)}`;
    const remedy = `Point ${option} at a readable PEM file, or leave it unset.`;
    let regular: boolean;
    try {
      regular = statSync(file).isFile();
    } catch (error) {
      throw new NovaletError('BROKER_TLS_FILE_UNREADABLE', `${named} cannot be read: ${(error as NodeJS.ErrnoException).code ?? String(error)}.`, remedy);
    }
    if (!regular) throw new NovaletError('BROKER_TLS_FILE_UNREADABLE', `${named} is not a regular file.`, remedy);
    try {
      return readFileSync(file);
    } catch (error) {
      throw new NovaletError('BROKER_TLS_FILE_UNREADABLE', `${named} cannot be read: ${(error as NodeJS.ErrnoException).code ?? String(error)}.`, remedy);
    }
  };
  const ca = read('ssl_ca_file', tls.caFile);
  const cert = read('ssl_cert_file', tls.certFile);
  // As Python's ssl, which oslo hands the files to: without a key file the
  // key is looked for in the certificate file.
  const key = tls.keyFile !== '' ? read('ssl_key_file', tls.keyFile) : cert;
  return { ...(ca && { ca }), ...(cert && { cert }), ...(key && { key }) };
}
