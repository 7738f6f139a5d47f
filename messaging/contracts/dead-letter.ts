/**
 * Why a message went to `novalet.dead`: the stable code in the
 * `x-novalet-error` header, one meaning each (docs/messages.md,
 * "Dead-lettering"). These codes name what was wrong with a message, not
 * what failed on a host, so they are apart from config/error-codes.ts (a
 * test keeps the two catalogues and the KVM reasons disjoint).
 */

export const DEAD_LETTER_CODES = [
  'MESSAGE_TOO_LARGE',
  'MESSAGE_NOT_UTF8',
  'MESSAGE_NOT_JSON',
  'MESSAGE_TOO_DEEP',
  'ENVELOPE_INVALID',
  'VERSION_UNSUPPORTED',
  'KIND_UNKNOWN',
  'BODY_INVALID',
  'HANDLER_FAILED',
  'REPLY_TO_MISSING',
  'UNROUTABLE',
] as const;

export type DeadLetterCode = (typeof DEAD_LETTER_CODES)[number];

/** Each code's one meaning. */
export const DEAD_LETTER_MEANINGS: Readonly<Record<DeadLetterCode, string>> = {
  MESSAGE_TOO_LARGE: 'The message is larger than [oslo_messaging_rabbit] max_message_size; it was not read at all.',
  MESSAGE_NOT_UTF8: 'The message is not valid UTF-8 text.',
  MESSAGE_NOT_JSON: 'The message is UTF-8 text but not one JSON value (empty, cut short, or not JSON syntax).',
  MESSAGE_TOO_DEEP: 'The message nests JSON arrays and objects deeper than novalet reads (32 levels).',
  ENVELOPE_INVALID: 'The message is JSON but not an envelope: not an object, or version, kind, id, sent_at or body missing or malformed.',
  VERSION_UNSUPPORTED: 'The envelope carries a wire version other than 1.',
  KIND_UNKNOWN: 'The envelope kind is not one the receiving service takes on that queue.',
  BODY_INVALID: "The body does not match its kind's contract: a field is missing, of the wrong type or out of its range.",
  HANDLER_FAILED: 'The receiving service failed on a valid message without settling it (a bug); its log says why.',
  REPLY_TO_MISSING: 'A call (show, list, console, hosts) came without a usable reply_to property, so nobody could receive its answer; it was not run.',
  UNROUTABLE: 'A message novalet itself published as mandatory came back from the broker: no queue is bound to its exchange with its routing key (x-novalet-routing-key).',
};

export const DEAD_LETTER_HEADERS = {
  error: 'x-novalet-error',
  reason: 'x-novalet-reason',
  routingKey: 'x-novalet-routing-key',
} as const;

/** The longest `x-novalet-reason` header value. */
export const MAX_REASON_LENGTH = 1000;
/** The most characters of an offending value a reason shows. */
export const MAX_EXCERPT_LENGTH = 40;

/**
 * `text` in printable ASCII: line breaks, tabs, control characters and
 * everything beyond ASCII escaped (`\n`, `\x00`, `\u00e9`, `\u{1f600}`),
 * so that a header or log line shows it on one line, as it was.
 */
export function asciiEscape(text: string, backslash = true): string {
  let out = '';
  for (const ch of text) {
    const code = ch.codePointAt(0)!;
    if (ch === '\\') out += backslash ? '\\\\' : '\\';
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (code >= 0x20 && code < 0x7f) out += ch;
    else if (code < 0x100) out += `\\x${code.toString(16).padStart(2, '0')}`;
    else if (code < 0x10000) out += `\\u${code.toString(16).padStart(4, '0')}`;
    else out += `\\u{${code.toString(16)}}`;
  }
  return out;
}

/** The escaped form of `text`, cut before `max` characters would be exceeded, never inside an escape. */
function escapeUpTo(text: string, max: number, quote: boolean): { shown: string; cut: boolean } {
  let shown = '';
  for (const ch of text) {
    // An excerpt escapes its quote and backslashes; a header value (a reason, already escaped where it shows a value) keeps them.
    const escaped = quote && ch === "'" ? "\\'" : asciiEscape(ch, quote);
    if (shown.length + escaped.length > max) return { shown, cut: true };
    shown += escaped;
  }
  return { shown, cut: false };
}

/**
 * A short, quoted, escaped excerpt of an offending string: at most
 * MAX_EXCERPT_LENGTH characters between the quotes, `...` included when
 * cut. A reason names the field and what is allowed; the value itself may
 * be anything a sender put there, so it never travels whole.
 */
export function excerpt(value: string): string {
  const whole = escapeUpTo(value, MAX_EXCERPT_LENGTH, true);
  if (!whole.cut) return `'${whole.shown}'`;
  return `'${escapeUpTo(value, MAX_EXCERPT_LENGTH - 3, true).shown}...'`;
}

/** `text` as a header value: printable ASCII, at most `max` characters, `...` included when cut. */
function headerValue(text: string, max: number): string {
  const whole = escapeUpTo(text, max, false);
  return whole.cut ? `${escapeUpTo(text, max - 3, false).shown}...` : whole.shown;
}

/** The headers a dead-lettered message is republished with, every value printable ASCII. */
export function deadLetterHeaders(code: DeadLetterCode, reason: string, routingKey: string): Record<string, string> {
  return {
    [DEAD_LETTER_HEADERS.error]: code,
    [DEAD_LETTER_HEADERS.reason]: headerValue(reason, MAX_REASON_LENGTH),
    // An AMQP routing key is at most 255 bytes; only an odd one (not ASCII) grows by escaping.
    [DEAD_LETTER_HEADERS.routingKey]: headerValue(routingKey, 255),
  };
}
