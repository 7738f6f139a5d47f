/**
 * Text from a configuration file, made safe to put inside a one-line error
 * message: quoted, control characters and line breaks escaped, very long
 * values shortened.
 */

const MAX_SHOWN = 120;
const SHOWN_WHEN_LONG = 100;

/** Escape everything that could break a line or a terminal. */
export function printable(text: string): string {
  let out = '';
  for (const ch of text) {
    const code = ch.codePointAt(0)!;
    if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (code < 0x20 || code === 0x7f || (code >= 0x80 && code < 0xa0)) {
      out += `\\x${code.toString(16).padStart(2, '0')}`;
    } else if (code === 0x2028 || code === 0x2029 || (code >= 0xd800 && code <= 0xdfff)) {
      out += `\\u${code.toString(16).padStart(4, '0')}`;
    } else out += ch;
  }
  return out;
}

/** `'value'` as an error message shows it: quoted, escaped, shortened. */
export function quoteForMessage(value: string): string {
  const chars = Array.from(value);
  let shown = value;
  let suffix = '';
  if (chars.length > MAX_SHOWN) {
    shown = chars.slice(0, SHOWN_WHEN_LONG).join('');
    suffix = `… (${chars.length} characters)`;
  }
  return `'${printable(shown).replace(/'/g, "\\'")}'${suffix}`;
}

/**
 * At most the first `max` characters of `text`, quoted and escaped, with `…`
 * when there is more: how a line that does not parse is named, so that an
 * error never shows a whole line of a file that may not be a configuration.
 */
export function quotePrefix(text: string, max: number): string {
  const chars = Array.from(text);
  const shown = chars.length > max ? chars.slice(0, max).join('') : text;
  return `'${printable(shown).replace(/'/g, "\\'")}'${chars.length > max ? '…' : ''}`;
}
