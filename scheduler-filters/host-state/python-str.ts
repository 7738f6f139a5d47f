/**
 * Python's str() of a host's value, as ComputeCapabilitiesFilter takes it
 * (`extra_specs_ops.match(str(cap), req)`): a requirement such as
 * `capabilities:cpu_info:features <in> avx` or `s== 16.0` is matched against
 * exactly the text nova would make. A value carries its Python type: JSON
 * cannot tell 16 from 16.0, so a float is marked (`pyFloat`).
 */

/** A number Python holds as a float (str(16.0) is "16.0", str(16) is "16"). */
export class PyFloat {
  constructor(readonly value: number) {}
}

export const pyFloat = (value: number): PyFloat => new PyFloat(value);

export type PyValue = string | number | boolean | null | PyFloat | PyValue[] | { [key: string]: PyValue };

/** repr(float): the shortest text that reads back, scientific below 1e-4 and from 1e16 on. */
export function floatRepr(x: number): string {
  if (Number.isNaN(x)) return 'nan';
  if (!Number.isFinite(x)) return x > 0 ? 'inf' : '-inf';
  if (x === 0) return Object.is(x, -0) ? '-0.0' : '0.0';
  const sign = x < 0 ? '-' : '';
  // JavaScript's toExponential() without a precision is the shortest round trip, as Python's repr.
  const [mantissa, exp] = Math.abs(x).toExponential().split('e') as [string, string];
  const e = Number(exp);
  const digits = mantissa.replace('.', '');
  if (e < -4 || e >= 16) {
    const m = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
    return `${sign}${m}e${e < 0 ? '-' : '+'}${String(Math.abs(e)).padStart(2, '0')}`;
  }
  if (e < 0) return `${sign}0.${'0'.repeat(-e - 1)}${digits}`;
  const whole = digits.slice(0, e + 1).padEnd(e + 1, '0');
  const fraction = digits.slice(e + 1);
  return `${sign}${whole}.${fraction || '0'}`;
}

/** repr(str): single quotes unless the text has one and no double quote; Python's escapes. */
export function strRepr(s: string): string {
  const quote = s.includes("'") && !s.includes('"') ? '"' : "'";
  let out = quote;
  for (const ch of s) {
    const cp = ch.codePointAt(0)!;
    if (ch === quote || ch === '\\') out += `\\${ch}`;
    else if (ch === '\t') out += '\\t';
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (cp < 0x20 || cp === 0x7f) out += `\\x${cp.toString(16).padStart(2, '0')}`;
    else if (cp < 0x7f || (ch !== ' ' && !/[\p{C}\p{Z}]/u.test(ch))) out += ch;
    else if (cp < 0x100) out += `\\x${cp.toString(16).padStart(2, '0')}`;
    else if (cp < 0x10000) out += `\\u${cp.toString(16).padStart(4, '0')}`;
    else out += `\\U${cp.toString(16).padStart(8, '0')}`;
  }
  return out + quote;
}

/** repr() of a value. */
export function pyRepr(value: PyValue): string {
  if (value === null) return 'None';
  if (value === true) return 'True';
  if (value === false) return 'False';
  if (typeof value === 'string') return strRepr(value);
  if (typeof value === 'number') return Number.isInteger(value) ? BigInt(value).toString() : floatRepr(value);
  if (value instanceof PyFloat) return floatRepr(value.value);
  if (Array.isArray(value)) return `[${value.map(pyRepr).join(', ')}]`;
  return `{${Object.entries(value).map(([k, v]) => `${strRepr(k)}: ${pyRepr(v)}`).join(', ')}}`;
}

/** str() of a value: a str is itself, anything else its repr. */
export function pyStr(value: PyValue): string {
  return typeof value === 'string' ? value : pyRepr(value);
}

/** json.dumps() with nova's (jsonutils') defaults: ", " and ": " separators, non-ASCII as \u escapes. */
export function pyJsonDumps(value: PyValue): string {
  if (value === null) return 'null';
  if (value === true) return 'true';
  if (value === false) return 'false';
  if (typeof value === 'number' || value instanceof PyFloat) {
    const text = pyRepr(value);
    return text === 'inf' ? 'Infinity' : text === '-inf' ? '-Infinity' : text === 'nan' ? 'NaN' : text;
  }
  if (typeof value === 'string') {
    let out = '"';
    for (let i = 0; i < value.length; i++) {
      const ch = value[i]!;
      const unit = value.charCodeAt(i);
      const named: Record<string, string> = { '"': '\\"', '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t', '\b': '\\b', '\f': '\\f' };
      // UTF-16 units, as Python's ensure_ascii escapes (an astral character as its surrogate pair).
      out += named[ch] ?? (unit < 0x20 || unit > 0x7e ? `\\u${unit.toString(16).padStart(4, '0')}` : ch);
    }
    return `${out}"`;
  }
  if (Array.isArray(value)) return `[${value.map(pyJsonDumps).join(', ')}]`;
  return `{${Object.entries(value).map(([k, v]) => `${pyJsonDumps(k)}: ${pyJsonDumps(v)}`).join(', ')}}`;
}
