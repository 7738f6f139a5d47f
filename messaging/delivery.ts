import type { Message } from 'amqplib';

/**
 * What a consumer is handed (messaging/consuming.ts) and what a reply or a
 * dead letter carries on: the message, its AMQP properties, and how to
 * settle it.
 */

export interface DeliveryProperties {
  messageId?: string;
  correlationId?: string;
  replyTo?: string;
  contentType?: string;
  headers?: Record<string, unknown>;
}

export interface Delivery {
  content: Buffer;
  exchange: string;
  routingKey: string;
  redelivered: boolean;
  properties: DeliveryProperties;
  /** No-op when the channel that delivered it is gone (the broker redelivers it), or when already acked or nacked. */
  ack(): void;
  nack(requeue: boolean): void;
}

export type DeliveryHandler = (delivery: Delivery) => void | Promise<void>;

export interface ConsumerHandle {
  /** Stops deliveries; deliveries in hand can still be acked, then its channel closes. Idempotent. */
  cancel(): Promise<void>;
}

/** amqplib's properties as strings (a sender may put a number where a string belongs). */
export function propertiesOf(message: Message): DeliveryProperties {
  const p = message.properties;
  return {
    ...(p.messageId !== undefined && { messageId: String(p.messageId) }),
    ...(p.correlationId !== undefined && { correlationId: String(p.correlationId) }),
    ...(p.replyTo !== undefined && { replyTo: String(p.replyTo) }),
    ...(p.contentType !== undefined && { contentType: String(p.contentType) }),
    ...(p.headers !== undefined && { headers: p.headers as Record<string, unknown> }),
  };
}
