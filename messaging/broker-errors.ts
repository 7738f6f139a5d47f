import { NovaletError } from '../config/novalet-error.js';

/** The errors the broker layer's callers see, worded once. */

export function publishFailed(message: string): NovaletError {
  return new NovaletError('BROKER_PUBLISH_FAILED', message, 'Check that RabbitMQ runs and has room (no memory or disk alarm), and that the exchange is one of the topology (messaging/topology.ts).');
}

export function stoppedError(what: string): NovaletError {
  return new NovaletError('BROKER_STOPPED', `Could not ${what}: the broker connection was stopped.`, 'This is a bug of novalet if it happens outside of shutdown.');
}

/** A mandatory message the broker returned (basic.return): no queue is bound to its exchange with its key. */
export function unroutable(exchange: string, routingKey: string, replyText: string): NovaletError {
  return new NovaletError(
    'MESSAGE_UNROUTABLE',
    `The broker returned the message to exchange '${exchange}' with routing key '${routingKey}' (${replyText}): no queue is bound to that exchange with that key, so nobody would receive it.`,
    'Start the service that consumes that key (its process declares its queue), or declare the queue in the topology of this process (messaging/topology.ts).',
  );
}
