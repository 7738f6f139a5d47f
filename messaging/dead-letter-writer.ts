import { DEAD_LETTER_HEADERS, deadLetterHeaders, type DeadLetterCode } from './contracts/dead-letter.js';
import type { DeadLetterLog } from './dead-letter-log.js';
import type { DeliveryProperties } from './delivery.js';
import type { PublishOptions } from './publishing.js';
import { DEAD_LETTER } from './topology.js';

/**
 * The one writer of `novalet.dead`: the consumer layer (a message too large
 * to read, a handler that failed without settling) and the services (a
 * message that fails its contract, a call without reply_to, a mandatory
 * message that came back) all move a message there through it. The body is
 * unchanged; the properties kept; headers added: the contract's
 * (docs/messages.md, "Dead-lettering") and this layer's; published with a
 * confirm; then one log line, rate-limited (messaging/dead-letter-log.ts).
 */

/** Headers of a message moved to `novalet.dead` by this layer, beside the contract's `x-novalet-error`, `x-novalet-reason`, `x-novalet-routing-key`. */
export const DEAD_REASON_HEADER = 'x-novalet-dead-reason';
export const DEAD_QUEUE_HEADER = 'x-novalet-queue';
export const DEAD_EXCHANGE_HEADER = 'x-novalet-original-exchange';
export const DEAD_ROUTING_KEY_HEADER = 'x-novalet-original-routing-key';

/** A message to dead-letter: a Delivery is one; so is a message that came back unroutable. */
export interface DeadLetterMessage {
  content: Buffer;
  routingKey: string;
  exchange?: string;
  properties?: DeliveryProperties;
}

export type Publish = (exchange: string, routingKey: string, content: Buffer, options: PublishOptions) => Promise<void>;

export class DeadLetterWriter {
  constructor(
    private readonly publish: Publish,
    private readonly log: DeadLetterLog,
    private readonly written: (code: DeadLetterCode) => void = () => undefined,
  ) {}

  /** Publishes `message` to novalet.dead with why; resolves once confirmed; rejects as Broker.publish does (the caller keeps the message then: a consumer requeues it). */
  async write(message: DeadLetterMessage, code: DeadLetterCode, reason: string, source: { queue?: string } = {}): Promise<void> {
    const properties = message.properties ?? {};
    const contract = deadLetterHeaders(code, reason, message.routingKey);
    await this.publish(DEAD_LETTER, message.routingKey, message.content, {
      ...(properties.messageId !== undefined && { messageId: properties.messageId }),
      ...(properties.correlationId !== undefined && { correlationId: properties.correlationId }),
      ...(properties.replyTo !== undefined && { replyTo: properties.replyTo }),
      ...(properties.contentType !== undefined && { contentType: properties.contentType }),
      headers: {
        ...properties.headers,
        // Bounded and printable, as the contract's reason.
        [DEAD_REASON_HEADER]: contract[DEAD_LETTER_HEADERS.reason],
        ...(source.queue !== undefined && { [DEAD_QUEUE_HEADER]: source.queue }),
        ...(message.exchange !== undefined && { [DEAD_EXCHANGE_HEADER]: message.exchange }),
        [DEAD_ROUTING_KEY_HEADER]: message.routingKey,
        ...contract,
      },
    });
    const from = source.queue !== undefined ? ` from queue '${source.queue}'` : '';
    this.log.record(
      code,
      `A message${from} with routing key '${contract[DEAD_LETTER_HEADERS.routingKey]}' is moved to ${DEAD_LETTER} (${code}): ${contract[DEAD_LETTER_HEADERS.reason]}`,
      source.queue !== undefined ? { queue: source.queue } : {},
    );
    this.written(code);
  }
}
