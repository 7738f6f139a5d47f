/**
 * nova's extra_specs_ops.match (nova/scheduler/filters/extra_specs_ops.py),
 * with its quirks, for ComputeCapabilitiesFilter and
 * AggregateInstanceExtraSpecsFilter. nova hands it the host's value as a
 * string (`str(cap)`, an aggregate's metadata value) and the requirement as
 * the flavor's extra spec, whose first word may be an operator:
 *
 * - none of the operators: the value must equal the whole requirement;
 * - `=` is "at least" (float(value) >= float(req)), `==` `!=` `>=` `<=`
 *   compare as floats;
 * - `s==` `s!=` `s<` `s<=` `s>` `s>=` compare strings (by code point, as
 *   Python does);
 * - `<in>`: the word is a substring of the value; `<all-in>`: every word is;
 * - `<or> a <or> b …`: the value equals one of the words;
 * - an operator with nothing after it matches nothing, and a missing value
 *   (nova's None) matches no operator.
 *
 * Where nova raises — a float operator on something Python's float() does
 * not read, a bare `<or>` — this throws EXTRA_SPEC_NOT_COMPARABLE with the
 * requirement and the value; the filter fails the host with that reason.
 */
import { NovaletError } from '../../config/novalet-error.js';

const FLOAT_OPERATORS: Record<string, (a: number, b: number) => boolean> = {
  '=': (a, b) => a >= b,
  '==': (a, b) => a === b,
  '!=': (a, b) => a !== b,
  '>=': (a, b) => a >= b,
  '<=': (a, b) => a <= b,
};

const STRING_OPERATORS: Record<string, (order: number) => boolean> = {
  's==': (o) => o === 0,
  's!=': (o) => o !== 0,
  's<': (o) => o < 0,
  's<=': (o) => o <= 0,
  's>': (o) => o > 0,
  's>=': (o) => o >= 0,
};

/** The operators nova knows, `<or>` included. */
export const EXTRA_SPEC_OPERATORS: readonly string[] = [...Object.keys(FLOAT_OPERATORS), ...Object.keys(STRING_OPERATORS), '<in>', '<all-in>', '<or>'];

/** Python's str.split(): runs of whitespace (str.isspace(), which also counts \x1c–\x1f). */
function pythonSplit(text: string): string[] {
  return text.split(/[\s\x1c-\x1f]+/u).filter((word) => word !== '');
}

/** Python's ordering of two str: by code point, not by UTF-16 unit. */
function pythonCompare(a: string, b: string): number {
  const left = Array.from(a);
  const right = Array.from(b);
  for (let i = 0; i < Math.min(left.length, right.length); i++) {
    const d = left[i]!.codePointAt(0)! - right[i]!.codePointAt(0)!;
    if (d !== 0) return d;
  }
  return left.length - right.length;
}

const FLOAT_LITERAL = /^[+-]?(?:\d(?:_?\d)*(?:\.(?:\d(?:_?\d)*)?)?|\.\d(?:_?\d)*)(?:[eE][+-]?\d(?:_?\d)*)?$/;
const FLOAT_WORD = /^[+-]?(?:inf|infinity|nan)$/i;

/** Python's float() of a str (ASCII digits: Python also reads other scripts' digits), or null where it raises ValueError. */
export function pythonFloat(text: string): number | null {
  const stripped = text.replace(/^[\s\x1c-\x1f]+|[\s\x1c-\x1f]+$/gu, '');
  if (FLOAT_WORD.test(stripped)) {
    const negative = stripped.startsWith('-');
    return /nan/i.test(stripped) ? Number.NaN : negative ? -Infinity : Infinity;
  }
  if (!FLOAT_LITERAL.test(stripped)) return null;
  return Number(stripped.replaceAll('_', ''));
}

function notComparable(req: string, value: string, why: string): NovaletError {
  return new NovaletError(
    'EXTRA_SPEC_NOT_COMPARABLE',
    `The extra spec requirement '${req}' cannot be evaluated against the host's value '${value}': ${why}. nova raises here, so the host does not pass.`,
    'Correct the flavor\'s extra spec (a numeric operator wants a number on both sides), or the host\'s value.',
  );
}

function asFloat(text: string, req: string, value: string): number {
  const number = pythonFloat(text);
  if (number === null) throw notComparable(req, value, `'${text}' is not a number`);
  return number;
}

/** Whether `value` (the host's, null when it has none) satisfies the extra spec requirement `req`, as nova decides. */
export function matchExtraSpec(value: string | null, req: string): boolean {
  const words = pythonSplit(req);
  const op = words.shift();
  const known = op !== undefined && EXTRA_SPEC_OPERATORS.includes(op);
  if (!known) return value === req;
  if (value === null) return false;
  if (op === '<or>') {
    // nova pops a word before it looks: a bare '<or>' raises IndexError.
    if (words.length === 0) throw notComparable(req, value, "'<or>' has no value after it");
    for (let i = 0; i < words.length; i += 2) {
      if (words[i] === value) return true;
    }
    return false;
  }
  if (words.length === 0) return false;
  const operand = words[0]!;
  if (op === '<in>') return value.includes(operand);
  if (op === '<all-in>') return words.every((word) => value.includes(word));
  const float = FLOAT_OPERATORS[op];
  // Python evaluates float(value) first: its error is the one nova raises.
  if (float) return float(asFloat(value, req, value), asFloat(operand, req, value));
  return STRING_OPERATORS[op]!(pythonCompare(value, operand));
}
