/**
 * Python's idea of whitespace, for str.strip()/lstrip()/rstrip() without
 * arguments. oslo.config strips lines, keys, values and list items with
 * these, and JavaScript's trim() uses a slightly different set (it strips
 * U+FEFF but not U+001C–U+001F or U+0085), so novalet uses its own.
 */

const PYTHON_WHITESPACE = new Set<string>([
  ' ', '\t', '\n', '\r', '\x0b', '\x0c',
  '\x1c', '\x1d', '\x1e', '\x1f', '\x85', '\xa0',
  '\u1680', '\u2000', '\u2001', '\u2002', '\u2003', '\u2004', '\u2005',
  '\u2006', '\u2007', '\u2008', '\u2009', '\u200a', '\u2028', '\u2029',
  '\u202f', '\u205f', '\u3000',
]);

export function pythonRstrip(s: string): string {
  let end = s.length;
  while (end > 0 && PYTHON_WHITESPACE.has(s[end - 1]!)) end--;
  return s.slice(0, end);
}

export function pythonLstrip(s: string): string {
  let start = 0;
  while (start < s.length && PYTHON_WHITESPACE.has(s[start]!)) start++;
  return s.slice(start);
}

export function pythonStrip(s: string): string {
  return pythonLstrip(pythonRstrip(s));
}
