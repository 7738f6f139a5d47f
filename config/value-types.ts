/**
 * Converting a value's text to its option's type, as oslo.config's types do
 * (oslo_config/types.py), with messages that say what is allowed.
 *
 * A failed conversion returns a `problem` that continues the sentence
 * "[section] option = 'value' …", e.g. "is not a boolean; use true or false
 * (also yes/no, on/off, 1/0)."
 */

import type { OptionType } from './option-definitions.js';
import { pythonStrip } from './python-whitespace.js';

export type Conversion = { ok: true; value: unknown } | { ok: false; problem: string };

// oslo.config's Boolean accepts true/1/on/yes and false/0/off/no (any case).
// novalet also accepts t/y and f/n, as oslo_utils.strutils.bool_from_string
// does: a superset, so every nova.conf that nova accepts still loads.
const TRUE_STRINGS = new Set(['1', 't', 'true', 'on', 'y', 'yes']);
const FALSE_STRINGS = new Set(['0', 'f', 'false', 'off', 'n', 'no']);

// Python's int(): optional sign, digits, single underscores between digits.
const INTEGER = /^[+-]?[0-9]+(?:_[0-9]+)*$/;
// Python's float() for finite decimal numbers (inf and nan are refused).
const DIGITS = '[0-9]+(?:_[0-9]+)*';
const FLOAT = new RegExp(`^[+-]?(?:${DIGITS}(?:\\.(?:${DIGITS})?)?|\\.${DIGITS})(?:[eE][+-]?${DIGITS})?$`);

/** What a value of this type may be, in words: "an integer ≥ 1", "one of: kvm, lxc, qemu, parallels". */
export function describeAllowed(type: OptionType): string {
  switch (type.kind) {
    case 'string':
      return 'any text';
    case 'list':
      return type.portItems ? 'a comma-separated list of port numbers from 1 to 65535' : 'any text';
    case 'bool':
      return 'true or false (also yes/no, on/off, 1/0)';
    case 'int':
    case 'port':
      return `an integer${bounds(type.min, type.max)}`;
    case 'float':
      return `a number${bounds(type.min, undefined)}`;
    case 'choice':
      return `one of: ${type.choices.map((c) => (c.value === '' ? "'' (empty)" : c.value)).join(', ')}`;
  }
}

function bounds(min: number | undefined, max: number | undefined): string {
  if (min !== undefined && max !== undefined) return ` ≥ ${min} and ≤ ${max}`;
  if (min !== undefined) return ` ≥ ${min}`;
  if (max !== undefined) return ` ≤ ${max}`;
  return '';
}

/**
 * oslo.config's List of String: strip, drop trailing commas, '' → [],
 * split at ',', strip every item. Empty items in the middle are kept, as
 * oslo keeps them.
 */
export function splitList(text: string): string[] {
  const s = pythonStrip(text).replace(/,+$/, '');
  if (s === '') return [];
  return s.split(',').map((item) => pythonStrip(item));
}

export function parseBoolean(text: string): boolean | undefined {
  const s = pythonStrip(text).toLowerCase();
  if (TRUE_STRINGS.has(s)) return true;
  if (FALSE_STRINGS.has(s)) return false;
  return undefined;
}

/**
 * Convert `text` to `type`. `nullable` options (default null) treat an
 * empty number as unset, as oslo.config's Integer and Float return None for
 * an empty value; for other options an empty number is an error.
 */
export function convertValue(type: OptionType, text: string, nullable: boolean): Conversion {
  switch (type.kind) {
    case 'string':
      return { ok: true, value: text };
    case 'list': {
      const items = splitList(text);
      if (type.portItems) return convertPortList(items);
      return { ok: true, value: type.lowerCaseItems ? items.map((i) => i.toLowerCase()) : items };
    }
    case 'choice': {
      if (type.choices.some((c) => c.value === text)) return { ok: true, value: text };
      return { ok: false, problem: `is not allowed; choose ${describeAllowed(type)}.` };
    }
    case 'bool': {
      const value = parseBoolean(text);
      if (value === undefined) return { ok: false, problem: `is not a boolean; use ${describeAllowed(type)}.` };
      return { ok: true, value };
    }
    case 'int':
    case 'port':
      return convertInteger(type, text, nullable);
    case 'float':
      return convertFloat(type, text, nullable);
  }
}

/** oslo's ListOpt(item_type=Integer(min=1, max=65535)): each item a port number, named when it is not. */
function convertPortList(items: string[]): Conversion {
  const port = { kind: 'port', min: 1, max: 65535 } as const;
  const values: number[] = [];
  for (const item of items) {
    const converted = convertInteger(port, item, false);
    if (!converted.ok) return { ok: false, problem: `has an item '${item.slice(0, 40)}' that ${converted.problem.replace(/^is /, 'is ')}` };
    values.push(converted.value as number);
  }
  return { ok: true, value: values };
}

function emptyNumber(type: OptionType): Conversion {
  return {
    ok: false,
    problem: `is empty; use ${describeAllowed(type)}, or remove the line to use the default.`,
  };
}

function convertInteger(type: Extract<OptionType, { kind: 'int' | 'port' }>, text: string, nullable: boolean): Conversion {
  const s = pythonStrip(text);
  if (s === '') return nullable ? { ok: true, value: null } : emptyNumber(type);
  const what = type.kind === 'port' ? 'a port number' : 'an integer';
  if (!INTEGER.test(s)) return { ok: false, problem: `is not ${what}; use ${describeAllowed(type)}.` };
  const value = Number(s.replace(/_/g, ''));
  if (!Number.isSafeInteger(value)) {
    return { ok: false, problem: `is too large; use ${describeAllowed(type)}.` };
  }
  return checkRange(type, value, type.min, type.max);
}

function convertFloat(type: Extract<OptionType, { kind: 'float' }>, text: string, nullable: boolean): Conversion {
  const s = pythonStrip(text);
  if (s === '') return nullable ? { ok: true, value: null } : emptyNumber(type);
  if (!FLOAT.test(s)) return { ok: false, problem: `is not a number; use ${describeAllowed(type)}, such as 1.5.` };
  const value = Number(s.replace(/_/g, ''));
  if (!Number.isFinite(value)) return { ok: false, problem: `is too large; use ${describeAllowed(type)}.` };
  return checkRange(type, value === 0 ? 0 : value, type.min, undefined);
}

function checkRange(type: OptionType, value: number, min: number | undefined, max: number | undefined): Conversion {
  if (min !== undefined && value < min) {
    return { ok: false, problem: `is less than the minimum ${min}; use ${describeAllowed(type)}.` };
  }
  if (max !== undefined && value > max) {
    return { ok: false, problem: `is greater than the maximum ${max}; use ${describeAllowed(type)}.` };
  }
  return { ok: true, value };
}

/**
 * A typed value as text, for `$reference` substitution and display: lists
 * comma-joined, booleans true/false, numbers in JavaScript's shortest form.
 */
export function valueAsText(value: unknown): string {
  if (Array.isArray(value)) return value.join(',');
  return String(value);
}
