import type { Fault } from './fault.js';
import { describeValue, isObject, refused, type Checked } from './wire.js';

/**
 * The body of a `reply` envelope: the answer to a call, published to the
 * default exchange with the call's reply_to as routing key and its
 * correlation_id (docs/messages.md, "Calls and replies").
 */
export type ReplyBody = { ok: true; result: unknown } | { ok: false; error: Fault };

export function okReply(result: unknown): ReplyBody {
  return { ok: true, result };
}

/** Only the fault's three fields travel (a HostFault's host stays behind). */
export function errorReply(fault: Fault): ReplyBody {
  return { ok: false, error: { code: fault.code, message: fault.message, remedy: fault.remedy } };
}

/** A reply's body as a caller reads it: `ok` true with `result`, or false with an `error` of three strings. */
export function validateReplyBody(body: unknown): Checked<ReplyBody> {
  if (!isObject(body)) return refused('BODY_INVALID', `body is ${describeValue(body)}: give {"ok": true, "result": …} or {"ok": false, "error": {…}}.`);
  if (body.ok === true) return { ok: true, value: { ok: true, result: body.result ?? null } };
  if (body.ok !== false) return refused('BODY_INVALID', `body.ok is ${describeValue(body.ok)}: give true or false.`);
  const error = body.error;
  if (!isObject(error)) return refused('BODY_INVALID', `body.error is ${describeValue(error)}: give an object {"code", "message", "remedy"}.`);
  for (const field of ['code', 'message', 'remedy'] as const) {
    if (typeof error[field] !== 'string') return refused('BODY_INVALID', `body.error.${field} is ${describeValue(error[field])}: give a string.`);
  }
  return { ok: true, value: errorReply(error as unknown as Fault) };
}
