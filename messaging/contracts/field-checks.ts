import { excerpt } from './dead-letter.js';
import { describeValue, refused, type Checked } from './wire.js';

/**
 * The pieces a body's check is made of: each takes a value and its JSON
 * path, returns it typed, or throws a Refusal whose reason names the path,
 * shows the value (an excerpt, never whole) and says what is allowed;
 * `checking` turns the first refusal into BODY_INVALID at the check's edge.
 * The capability report's check uses them (capability-report-check.ts);
 * compute-requests.ts holds the same rules as private copies of its own.
 */

/** Thrown inside a check, caught by `checking`: the first field that fails, as a sentence. */
export class Refusal {
  constructor(readonly reason: string) {}
}

export function refuse(path: string, value: unknown, allowed: string): never {
  throw new Refusal(`${path} is ${describeValue(value)}: ${allowed}.`);
}

// eslint-disable-next-line no-control-regex
export const CONTROL = /[\u0000-\u001f\u007f]/;
export const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
const PLAIN_KEY = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** The path of a key under `path`: `a.b` for a plain key, `a['odd key']` otherwise. */
export function child(path: string, key: string): string {
  return PLAIN_KEY.test(key) ? `${path}.${key}` : `${path}[${excerpt(key)}]`;
}

export function object(value: unknown, path: string, allowed: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) refuse(path, value, allowed);
  return value as Record<string, unknown>;
}

export function array(value: unknown, path: string, max: number, allowed: string): unknown[] {
  if (!Array.isArray(value)) refuse(path, value, allowed);
  if (value.length > max) throw new Refusal(`${path} has ${value.length} items: ${allowed}.`);
  return value;
}

export function wholeNumber(value: unknown, path: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    refuse(path, value, max === Number.MAX_SAFE_INTEGER ? `give a whole number of at least ${min}` : `give a whole number from ${min} to ${max}`);
  }
  return value;
}

export function boolean(value: unknown, path: string): boolean {
  if (typeof value !== 'boolean') refuse(path, value, 'give true or false');
  return value;
}

/** One of a few fixed strings (or null, when `choices` has it). */
export function oneOf<T extends string | null>(value: unknown, path: string, choices: readonly T[]): T {
  if (!(choices as readonly unknown[]).includes(value)) refuse(path, value, `give ${choices.map((c) => (c === null ? 'null' : `"${c}"`)).join(', ')}`);
  return value as T;
}

/** A string of `min`..`max` UTF-16 units, well-formed, without control characters unless `controls` allows them. */
export function text(value: unknown, path: string, min: number, max: number, allowed: string, controls: 'refused' | 'allowed' = 'refused'): string {
  if (typeof value !== 'string' || value.length < min || value.length > max || LONE_SURROGATE.test(value)) refuse(path, value, allowed);
  if (controls === 'refused' && CONTROL.test(value)) refuse(path, value, allowed);
  return value;
}

/** A string matching `pattern` (which bounds its length) and no longer than `max`. */
export function matching(value: unknown, path: string, pattern: RegExp, max: number, allowed: string): string {
  if (typeof value !== 'string' || value.length > max || !pattern.test(value)) refuse(path, value, allowed);
  return value;
}

/** The keys of an object map, at most `max`, each of 1 to `keyLength` characters without control characters. */
export function mapEntries(value: unknown, path: string, max: number, keyLength: number, allowed: string): [string, unknown][] {
  const entries = Object.entries(object(value, path, allowed));
  if (entries.length > max) throw new Refusal(`${path} has ${entries.length} keys: ${allowed}.`);
  for (const [key] of entries) {
    if (key.length === 0 || key.length > keyLength || CONTROL.test(key) || LONE_SURROGATE.test(key)) {
      throw new Refusal(`${path} has the key ${excerpt(key)}: give keys of 1 to ${keyLength} characters without control characters.`);
    }
  }
  return entries;
}

/** Runs a check built of the pieces above: its value, or BODY_INVALID with the first refusal's reason. */
export function checking<T>(check: () => T): Checked<T> {
  try {
    return { ok: true, value: check() };
  } catch (err) {
    if (err instanceof Refusal) return refused('BODY_INVALID', err.reason);
    throw err;
  }
}
