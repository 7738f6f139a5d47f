import { randomUUID } from 'node:crypto';
import type { ConfirmChannel, Message, Options } from 'amqplib';

/**
 * One publishing channel in confirm mode, and what became of each message
 * published on it: confirmed, refused (nacked), returned (a mandatory
 * message no queue took), not confirmed in time, or lost with the channel.
 *
 * RabbitMQ sends basic.return before the basic.ack of the same message
 * (https://www.rabbitmq.com/docs/confirms#when-publishes-are-confirmed), and
 * amqplib handles a channel's frames in order, so a return is known when
 * its confirm arrives. A return carries no delivery tag; it is matched to
 * its publish by exchange, routing key and message id (`send` sets a fresh
 * one on a mandatory message that has none); messages alike in all three
 * are matched in the order published, which is the order the broker returns
 * them in.
 */

export type ConfirmOutcome =
  | { kind: 'ack' }
  | { kind: 'nack' }
  | { kind: 'returned'; replyText: string }
  | { kind: 'timeout' }
  | { kind: 'closed'; error: (Error & { code?: number }) | null };

interface Awaiting {
  returned: string | null;
}

export class ConfirmedChannel {
  open = true;
  /** Why the broker closed it, once it did. */
  error: (Error & { code?: number }) | null = null;
  /** Mandatory messages awaiting their confirm, by returnKey, in the order published. */
  private readonly mandatory = new Map<string, Awaiting[]>();

  constructor(
    private readonly channel: ConfirmChannel,
    onError: (error: Error) => void,
  ) {
    channel.on('error', (error: Error) => {
      this.error = error;
      onError(error);
    });
    channel.on('close', () => {
      this.open = false;
    });
    channel.on('return', (message: Message) => this.returned(message));
  }

  /** Publishes once and waits for the outcome, at most until `deadline` (ms since the epoch). */
  send(exchange: string, routingKey: string, content: Buffer, properties: Options.Publish, deadline: number): Promise<ConfirmOutcome> {
    let awaiting: Awaiting | null = null;
    let key = '';
    if (properties.mandatory) {
      if (properties.messageId === undefined) properties = { ...properties, messageId: randomUUID() };
      key = returnKey(exchange, routingKey, properties.messageId);
      awaiting = { returned: null };
      const list = this.mandatory.get(key) ?? [];
      list.push(awaiting);
      this.mandatory.set(key, list);
    }
    const forget = (): void => {
      if (!awaiting) return;
      const list = this.mandatory.get(key);
      const at = list?.indexOf(awaiting) ?? -1;
      if (at >= 0) list!.splice(at, 1);
      if (list?.length === 0) this.mandatory.delete(key);
    };
    return new Promise((resolve) => {
      const done = (outcome: ConfirmOutcome): void => {
        clearTimeout(timer);
        forget();
        resolve(outcome);
      };
      const timer = setTimeout(() => done({ kind: 'timeout' }), Math.max(0, deadline - Date.now()));
      try {
        this.channel.publish(exchange, routingKey, content, properties, (error: unknown) => {
          if (!error) done(awaiting?.returned != null ? { kind: 'returned', replyText: awaiting.returned } : { kind: 'ack' });
          else if (error instanceof Error && error.message === 'message nacked') done({ kind: 'nack' });
          else done({ kind: 'closed', error: this.error });
        });
      } catch {
        // Published on a channel that closed meanwhile.
        done({ kind: 'closed', error: this.error });
      }
    });
  }

  private returned(message: Message): void {
    const { exchange, routingKey, replyText } = message.fields as unknown as { exchange: string; routingKey: string; replyText: string };
    const messageId = message.properties.messageId as string | undefined;
    const awaiting = this.mandatory.get(returnKey(exchange, routingKey, messageId))?.find((a) => a.returned === null);
    // Not found: its publish gave up waiting (timeout) already.
    if (awaiting) awaiting.returned = replyText || 'NO_ROUTE';
  }
}

function returnKey(exchange: string, routingKey: string, messageId: string | undefined): string {
  return `${exchange}\u0000${routingKey}\u0000${messageId ?? ''}`;
}
