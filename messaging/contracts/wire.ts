import { excerpt, type DeadLetterCode } from './dead-letter.js';

/**
 * The envelope's shape and what every check of a message returns, shared by
 * the codec (messaging/envelope.ts, which re-exports them) and the
 * contracts of each kind's body. Here rather than in envelope.ts because
 * messaging/contracts/ may import only itself and config/
 * (docs/architecture.md).
 */

export const WIRE_VERSION = 1;

export interface Envelope<K extends string = string, B = unknown> {
  version: 1;
  kind: K;
  id: string;
  sent_at: string;
  body: B;
}

/** A check's result: the value, or the dead-letter code and the reason (a sentence naming the field and what is allowed). */
export type Checked<T> = { ok: true; value: T } | { ok: false; code: DeadLetterCode; reason: string };

export type Refused = Extract<Checked<never>, { ok: false }>;

export function refused(code: DeadLetterCode, reason: string): Refused {
  return { ok: false, code, reason };
}

/** Any RFC 4122 layout, either case; the variant and version digits are not checked. */
export const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * A JSON value as a reason names it: `missing`, `null`, `an array`,
 * `an object`, a number or boolean as JSON writes it, `the string '…'`
 * (a short escaped excerpt, never the whole value).
 */
export function describeValue(value: unknown): string {
  if (value === undefined) return 'missing';
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  if (typeof value === 'string') return `the string ${excerpt(value)}`;
  return excerpt(String(value)).slice(1, -1);
}
