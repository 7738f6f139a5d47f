/**
 * What the compute service sends over the bus (docs/messages.md): instance
 * events and capability reports on `novalet.events`, replies to calls on
 * the default exchange, reschedules to the schedulers, and messages it
 * could not handle to `novalet.dead`. Every publish waits for the broker's
 * confirm.
 */
import type { Broker, Delivery } from '../messaging/broker.js';
import type { CapabilityReport } from '../messaging/contracts/capability-report.js';
import type { BuildBody } from '../messaging/contracts/compute-requests.js';
import { deadLetterHeaders, type DeadLetterCode } from '../messaging/contracts/dead-letter.js';
import type { Fault } from '../messaging/contracts/fault.js';
import type { InstanceEvent } from '../messaging/contracts/instance-event.js';
import { encodeEnvelope, EVENT_KIND, makeEnvelope, REPLY_KIND, REPORT_KIND } from '../messaging/envelope.js';
import { DEAD_LETTER, EVENT_EXCHANGE, instanceEventKey, REQUEST_EXCHANGE, reportKey, SCHEDULER_KEY } from '../messaging/topology.js';

export class BusPublisher {
  constructor(
    private readonly broker: Broker,
    private readonly host: string,
  ) {}

  event(event: InstanceEvent): Promise<void> {
    const { event: name, ...body } = event;
    return this.broker.publish(EVENT_EXCHANGE, instanceEventKey(event.uuid, name), encodeEnvelope(makeEnvelope(EVENT_KIND, { event: name, ...body })));
  }

  report(report: CapabilityReport): Promise<void> {
    return this.broker.publish(EVENT_EXCHANGE, reportKey(this.host), encodeEnvelope(makeEnvelope(REPORT_KIND, report)));
  }

  reschedule(build: BuildBody): Promise<void> {
    return this.broker.publish(REQUEST_EXCHANGE, SCHEDULER_KEY, encodeEnvelope(makeEnvelope('reschedule', build)));
  }

  /** The answer to a call, when the request asked for one (reply_to set). */
  async reply(delivery: Delivery, answer: { ok: true; result: unknown } | { ok: false; error: Fault }): Promise<void> {
    const { replyTo, correlationId } = delivery.properties;
    if (!replyTo) return;
    await this.broker.publish('', replyTo, encodeEnvelope(makeEnvelope(REPLY_KIND, answer)), {
      ...(correlationId !== undefined ? { correlationId } : {}),
      // A reply nobody waits for any more should not sit in a queue for ever.
      persistent: false,
    });
  }

  /** The message as it came, with why, to `novalet.dead`. */
  deadLetter(delivery: Delivery, code: DeadLetterCode, reason: string): Promise<void> {
    return this.broker.publish(DEAD_LETTER, delivery.routingKey, delivery.content, {
      headers: deadLetterHeaders(code, reason, delivery.routingKey),
      ...(delivery.properties.messageId !== undefined ? { messageId: delivery.properties.messageId } : {}),
    });
  }
}
