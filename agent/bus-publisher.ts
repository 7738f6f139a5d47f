/**
 * What the compute service sends over the bus (docs/messages.md): the
 * outbox's messages (instance events, reschedules) as they are kept,
 * capability reports on `novalet.events`, replies to calls on the default
 * exchange, and messages it could not handle to `novalet.dead`. Every
 * publish waits for the broker's confirm.
 */
import type { Broker, Delivery } from '../messaging/broker.js';
import type { CapabilityReport } from '../messaging/contracts/capability-report.js';
import type { DeadLetterCode } from '../messaging/contracts/dead-letter.js';
import type { Fault } from '../messaging/contracts/fault.js';
import { encodeEnvelope, makeEnvelope, REPLY_KIND, REPORT_KIND } from '../messaging/envelope.js';
import { computeQueue, EVENT_EXCHANGE, reportKey } from '../messaging/topology.js';
import { answerId } from '../service/message-ids.js';
import type { OutboxMessage } from '../service/outbox.js';

export class BusPublisher {
  constructor(
    private readonly broker: Broker,
    private readonly host: string,
  ) {}

  /** An outbox message as it was kept: its id as the AMQP message_id too. */
  outboxMessage(m: OutboxMessage): Promise<void> {
    return this.broker.publish(m.exchange, m.routingKey, Buffer.from(m.content, 'utf8'), { messageId: m.id, mandatory: m.mandatory });
  }

  /** A mandatory outbox message nobody took (a reschedule with no scheduler queue bound), kept in novalet.dead with why. */
  unroutable(m: OutboxMessage, reason: string): Promise<void> {
    return this.broker.deadLetter({ content: Buffer.from(m.content, 'utf8'), routingKey: m.routingKey, exchange: m.exchange, properties: { messageId: m.id, contentType: 'application/json' } }, 'UNROUTABLE', reason);
  }

  report(report: CapabilityReport): Promise<void> {
    return this.broker.publish(EVENT_EXCHANGE, reportKey(this.host), encodeEnvelope(makeEnvelope(REPORT_KIND, report)));
  }

  /**
   * The answer to a call (reply_to set), under an id derived from the call's
   * (`requestId`): a call redelivered after a crash is answered again, and
   * the repeat is recognisable. Not kept on disk: the call itself is acknowledged only
   * once its reply is confirmed, so the call is what survives a crash.
   */
  async reply(delivery: Delivery, answer: { ok: true; result: unknown } | { ok: false; error: Fault }, requestId: string): Promise<void> {
    const { replyTo, correlationId } = delivery.properties;
    if (!replyTo) return;
    const id = answerId(requestId, REPLY_KIND);
    await this.broker.publish('', replyTo, encodeEnvelope(makeEnvelope(REPLY_KIND, answer, id)), {
      messageId: id,
      ...(correlationId !== undefined ? { correlationId } : {}),
      // A reply nobody waits for any more should not sit in a queue for ever.
      persistent: false,
    });
  }

  /** The message as it came, with why, to `novalet.dead` (the broker's one dead-letter writer, its log lines rate-limited). */
  deadLetter(delivery: Delivery, code: DeadLetterCode, reason: string): Promise<void> {
    return this.broker.deadLetter(delivery, code, reason, { queue: computeQueue(this.host) });
  }
}
