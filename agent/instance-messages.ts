/**
 * What the compute host publishes about its instances, as outbox messages:
 * instance events on `novalet.events` (key `instance.<uuid>.<event>`, not
 * mandatory: nobody need be listening) and reschedules to the schedulers
 * (exchange `novalet`, key `scheduler`, mandatory: a reschedule nobody takes
 * comes back and is dead-lettered with the reason). Each is one stream per
 * instance, so an instance's messages go out in the order they happened.
 *
 * Ids: what answers a request takes `answerId(request id, name)`
 * (service/message-ids.ts), so a redelivered request is answered again
 * under the same id; what nobody asked for (a crash) takes a random one,
 * kept in the record until confirmed.
 */
import { randomUUID } from 'node:crypto';
import type { BuildBody } from '../messaging/contracts/compute-requests.js';
import type { InstanceEvent } from '../messaging/contracts/instance-event.js';
import { encodeEnvelope, EVENT_KIND, makeEnvelope } from '../messaging/envelope.js';
import { EVENT_EXCHANGE, instanceEventKey, REQUEST_EXCHANGE, SCHEDULER_KEY } from '../messaging/topology.js';
import { answerId } from '../service/message-ids.js';
import type { OutboxMessage } from '../service/outbox.js';

/** An event as callers give it: this host fills in `host`. */
type WithoutHost<T> = T extends unknown ? Omit<T, 'host'> : never;

export class InstanceMessages {
  constructor(readonly host: string) {}

  /** An instance event; `requestId`: the request it answers (its id then derives from it), none for what nobody asked. */
  event(event: WithoutHost<InstanceEvent>, requestId?: string): OutboxMessage {
    const body = { ...event, host: this.host } as InstanceEvent;
    const { event: name, ...rest } = body;
    const id = requestId ? answerId(requestId, name) : randomUUID();
    return {
      id,
      exchange: EVENT_EXCHANGE,
      routingKey: instanceEventKey(body.uuid, name),
      content: encodeEnvelope(makeEnvelope(EVENT_KIND, { event: name, ...rest }, id)).toString('utf8'),
      mandatory: false,
      stream: body.uuid,
      at: Date.now(),
    };
  }

  /** A placed build that failed here goes back to the schedulers, this host's fault appended (rescheduleBody). */
  reschedule(body: BuildBody, requestId: string): OutboxMessage {
    const id = answerId(requestId, 'reschedule');
    return {
      id,
      exchange: REQUEST_EXCHANGE,
      routingKey: SCHEDULER_KEY,
      content: encodeEnvelope(makeEnvelope('reschedule', body, id)).toString('utf8'),
      mandatory: true,
      stream: body.instance.uuid,
      at: Date.now(),
    };
  }
}
