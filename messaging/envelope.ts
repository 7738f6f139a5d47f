import { randomUUID } from 'node:crypto';
import { describeValue, isObject, refused, UUID_PATTERN, WIRE_VERSION, type Checked, type Envelope } from './contracts/wire.js';

export { describeValue, refused, UUID_PATTERN, WIRE_VERSION, type Checked, type Envelope } from './contracts/wire.js';

/**
 * The envelope every novalet message travels in (docs/messages.md,
 * "Envelope"): `{"version": 1, "kind", "id", "sent_at", "body"}` as one
 * UTF-8 JSON object. Decoding is the bus's first line: it reads nothing it
 * has not bounded first (size, then UTF-8, then nesting depth, then JSON),
 * and what it refuses comes back as a dead-letter code and a reason that
 * names the field and what is allowed.
 */

/** Nesting levels of arrays and objects a message may have, the envelope itself counting as one. */
export const DEFAULT_MAX_DEPTH = 32;

/** The envelope kinds of what is not a request: the answer to a call, an instance event, a capability report. */
export const REPLY_KIND = 'reply';
export const EVENT_KIND = 'event';
export const REPORT_KIND = 'report';

/**
 * ISO 8601 in UTC: `Z` (JavaScript's toISOString) or `+00:00` (Python's
 * datetime.isoformat() of an aware UTC time), seconds required, any
 * fraction up to nanoseconds.
 */
const UTC_TIME = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.\d{1,9})?(?:Z|\+00:00)$/;

export function isUtcTime(text: string): boolean {
  const m = UTC_TIME.exec(text);
  if (!m) return false;
  const [year, month, day, hour, minute, second] = m.slice(1).map(Number) as [number, number, number, number, number, number];
  if (month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || second > 59) return false;
  // The day exists in that month (a Date rolls 2026-02-30 over to March); setUTCFullYear takes years below 100 as given.
  const date = new Date(0);
  date.setUTCFullYear(year, month - 1, day);
  return date.getUTCDate() === day;
}

export function makeEnvelope<K extends string, B>(kind: K, body: B, id: string = randomUUID()): Envelope<K, B> {
  return { version: WIRE_VERSION, kind, id, sent_at: new Date().toISOString(), body };
}

/** The message body to publish (content_type application/json, delivery_mode 2): the five fields, in order. */
export function encodeEnvelope(envelope: Envelope): Buffer {
  const { version, kind, id, sent_at, body } = envelope;
  // JSON.stringify escapes lone surrogates, so the bytes are always valid UTF-8.
  return Buffer.from(JSON.stringify({ version, kind, id, sent_at, body }), 'utf8');
}

const OPEN_BRACKET = 0x5b; // [
const OPEN_BRACE = 0x7b; // {
const CLOSE_BRACKET = 0x5d; // ]
const CLOSE_BRACE = 0x7d; // }
const QUOTE = 0x22; // "
const BACKSLASH = 0x5c; // \

/**
 * The deepest nesting of arrays and objects in `text`, counted outside
 * strings in one pass without recursion, so that a megabyte of `[` costs a
 * loop, not the stack; it stops counting once past `limit`. Not a parser:
 * text that is not JSON is JSON.parse's to refuse afterwards.
 */
export function nestingDepth(text: string, limit: number): number {
  let depth = 0;
  let deepest = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === BACKSLASH) i++;
      else if (c === QUOTE) inString = false;
    } else if (c === QUOTE) inString = true;
    else if (c === OPEN_BRACKET || c === OPEN_BRACE) {
      depth++;
      if (depth > deepest) {
        deepest = depth;
        if (deepest > limit) return deepest;
      }
    } else if (c === CLOSE_BRACKET || c === CLOSE_BRACE) depth--;
  }
  return deepest;
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });

/**
 * One message's content as an envelope, or why not. In order: more than
 * `maxBytes` is refused unread (MESSAGE_TOO_LARGE); bytes that are not
 * UTF-8 (MESSAGE_NOT_UTF8; one leading byte-order mark is skipped, as
 * RFC 8259 allows and Python's json.loads does); nesting deeper than
 * `maxDepth` (MESSAGE_TOO_DEEP), counted before parsing; not JSON
 * (MESSAGE_NOT_JSON); then the envelope's fields. Fields beyond the five
 * are ignored, so that a later minor addition does not dead-letter; the
 * returned envelope has the five only, its id in lower case.
 */
export function decodeEnvelope(content: Buffer, limits: { maxBytes: number; maxDepth?: number }): Checked<Envelope> {
  const maxDepth = limits.maxDepth ?? DEFAULT_MAX_DEPTH;
  if (content.length > limits.maxBytes) {
    return refused(
      'MESSAGE_TOO_LARGE',
      `The message is ${content.length} bytes, more than the ${limits.maxBytes} novalet reads ([oslo_messaging_rabbit] max_message_size): send a smaller message, or raise max_message_size on the receiving host.`,
    );
  }
  let text: string;
  try {
    text = utf8.decode(content);
  } catch {
    return refused('MESSAGE_NOT_UTF8', 'The message is not valid UTF-8: publish the JSON envelope encoded as UTF-8.');
  }
  if (nestingDepth(text, maxDepth) > maxDepth) {
    return refused('MESSAGE_TOO_DEEP', `The message nests arrays and objects more than ${maxDepth} levels deep: a novalet message needs far fewer; send the envelope of docs/messages.md.`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    // V8's message may quote the input; only the position is passed on.
    const position = /at position (\d+)/.exec((err as Error).message)?.[1];
    const where = text.trim() === '' ? 'it is empty' : position !== undefined ? `the JSON syntax breaks at character ${position}` : 'it is not one complete JSON value';
    return refused('MESSAGE_NOT_JSON', `The message is not JSON (${where}): publish one JSON object, the envelope of docs/messages.md.`);
  }
  if (!isObject(parsed)) {
    return refused('ENVELOPE_INVALID', `The message is ${describeValue(parsed)}, not an envelope: publish a JSON object {"version": 1, "kind", "id", "sent_at", "body"}.`);
  }
  const { version, kind, id, sent_at: sentAt, body } = parsed;
  // The version first: another version may change every other field.
  if (typeof version === 'number' && version !== WIRE_VERSION) {
    return refused('VERSION_UNSUPPORTED', `version is ${describeValue(version)}: this novalet speaks wire version ${WIRE_VERSION} only; send version 1.`);
  }
  if (version !== WIRE_VERSION) {
    return refused('ENVELOPE_INVALID', `version is ${describeValue(version)}: give the number 1.`);
  }
  if (typeof kind !== 'string' || kind.length === 0 || kind.length > 64) {
    return refused('ENVELOPE_INVALID', `kind is ${describeValue(kind)}: give the request's name as a string of 1 to 64 characters, such as "build".`);
  }
  if (typeof id !== 'string' || !UUID_PATTERN.test(id)) {
    return refused('ENVELOPE_INVALID', `id is ${describeValue(id)}: give a UUID unique to this message, such as "5b0e2f4a-8c1d-4e7f-9a2b-3c4d5e6f7a8b".`);
  }
  if (typeof sentAt !== 'string' || !isUtcTime(sentAt)) {
    return refused('ENVELOPE_INVALID', `sent_at is ${describeValue(sentAt)}: give an ISO 8601 UTC time, such as "2026-12-01T08:00:00.000Z".`);
  }
  if (!isObject(body)) {
    return refused('ENVELOPE_INVALID', `body is ${describeValue(body)}: give a JSON object ({} for a request that takes no field).`);
  }
  return { ok: true, value: { version: WIRE_VERSION, kind, id: id.toLowerCase(), sent_at: sentAt, body } };
}
