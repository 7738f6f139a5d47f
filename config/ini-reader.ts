/**
 * Reading nova.conf syntax exactly as oslo.config's iniparser does:
 *
 * - every line is right-stripped; a blank line ends a multi-line value;
 * - a line starting with a space or tab continues the previous value
 *   (continuations are left-stripped and joined with '\n');
 * - `[section]` starts a section; `DEFAULT` keeps its case, every other
 *   section name is lower-cased (oslo normalises group names that way);
 * - lines starting with `#` or `;` are comments — there are NO inline
 *   comments: `a = b # c` has the value `b # c`;
 * - `key = value` or `key: value`, split at whichever of `=` and `:` comes
 *   first; key and value are stripped, and one pair of matching quotes
 *   around the value is removed.
 *
 * Every entry keeps its file, line, section, key and value. Anything else is
 * a ConfigError naming file and line, never another exception.
 */

import { ConfigError } from './config-error.js';
import { quotePrefix } from './quote-for-message.js';
import { pythonLstrip, pythonRstrip, pythonStrip } from './python-whitespace.js';

export interface IniEntry {
  file: string;
  /** Line of the `key = value` line (continuations follow it). */
  line: number;
  /** Normalised section name. */
  section: string;
  key: string;
  /** The value as oslo.config sees it: stripped, unquoted, continuations joined with '\n'. */
  value: string;
}

export interface IniDocument {
  file: string;
  /** Every assignment, in file order (later ones win). */
  entries: IniEntry[];
}

/** oslo.config's _normalize_group_name: `DEFAULT` stays, everything else is lower-cased. */
export function normalizeSectionName(name: string): string {
  return name === 'DEFAULT' ? name : name.toLowerCase();
}

const EXAMPLE = 'write options as name = value below a section header such as [DEFAULT]';
/** The most of a bad line an error shows (see `named`). */
const SHOWN = 40;

/**
 * Parse nova.conf text. Throws ConfigError (CONFIG_PARSE) with file and line.
 *
 * An error never echoes a whole line: the file may not be a configuration
 * at all (`--config-file /etc/shadow`). Before the first section header
 * nothing of the line is shown; after it, at most its first word (up to a
 * space, '=' or ':', at most SHOWN characters), which names the line without
 * showing a value that may be a password (`[transport_url = rabbit://u:pw@…`).
 */
export function parseIni(text: string, file: string): IniDocument {
  const entries: IniEntry[] = [];
  // Python reads files with universal newlines: \r\n, \r and \n all end a line.
  const lines = text.split(/\r\n|\r|\n/);
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();

  let section: string | null = null;
  let key: string | null = null;
  let keyLine = 0;
  let valueLines: string[] = [];

  const fail = (line: number, problem: string, remedy: string): never => {
    throw new ConfigError({ code: 'CONFIG_PARSE', file, line, problem, remedy });
  };
  /** ` starting 'word'` once the file has shown a section header, else ''. */
  const startingWith = (line: string): string => {
    if (section === null) return '';
    const word = pythonStrip(line).split(/[\s=:]/)[0]!;
    return word === '' ? '' : ` starting ${quotePrefix(word, SHOWN)}`;
  };

  const flush = (): void => {
    if (key === null) return;
    if (section === null) {
      fail(
        keyLine,
        'an option is set before any section header, so this does not read as a configuration file.',
        'Put a section header such as [DEFAULT] above it, or check that this is the configuration file you meant.',
      );
    }
    entries.push({ file, line: keyLine, section: section!, key, value: valueLines.join('\n') });
    key = null;
    valueLines = [];
  };

  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1;
    const line = pythonRstrip(lines[i]!);
    if (line === '') {
      flush(); // a blank line ends a multi-line value
      continue;
    }
    if (line[0] === ' ' || line[0] === '\t') {
      if (key === null) {
        fail(
          lineNo,
          `unexpected continuation line${startingWith(line)}: a line starting with a space or tab continues the value above it, and there is none.`,
          'Remove the leading whitespace, or put the line right after an option.',
        );
      }
      valueLines.push(pythonLstrip(line));
      continue;
    }
    flush();
    if (line[0] === '[') {
      if (!line.endsWith(']')) {
        fail(lineNo, `invalid section header${startingWith(line)}: it must end with ']'.`, 'Write a section header alone on its line, as in [libvirt].');
      }
      if (line.length <= 2) {
        fail(lineNo, "empty section name '[]'.", 'Name the section, as in [libvirt].');
      }
      section = normalizeSectionName(line.slice(1, -1));
    } else if (line[0] === '#' || line[0] === ';') {
      // comment
    } else {
      const colon = line.indexOf(':');
      const equal = line.indexOf('=');
      if (colon < 0 && equal < 0) {
        fail(
          lineNo,
          section === null
            ? "the line is not 'name = value', a [section] header or a comment."
            : `no ':' or '=' found in the line${startingWith(line)}.`,
          `To set an option, ${EXAMPLE}.`,
        );
      }
      const at = colon < 0 || (equal >= 0 && equal < colon) ? equal : colon;
      const k = pythonStrip(line.slice(0, at));
      if (k === '') {
        fail(lineNo, `key cannot be empty: the line starts with '${line[at]}'.`, `Name the option: ${EXAMPLE}.`);
      }
      key = k;
      keyLine = lineNo;
      valueLines = [unquote(pythonStrip(line.slice(at + 1)))];
    }
  }
  flush();
  return { file, entries };
}

/** Remove one pair of matching surrounding quotes, as oslo does (so `"` alone becomes ''). */
function unquote(value: string): string {
  if (value !== '' && (value[0] === '"' || value[0] === "'") && value[0] === value[value.length - 1]) {
    return value.slice(1, -1);
  }
  return value;
}

/**
 * Bytes of a configuration file as text: UTF-8 (a leading byte-order mark is
 * skipped), no NUL bytes. Anything else is a ConfigError naming the line,
 * where Python would stop with a UnicodeDecodeError traceback.
 */
export function decodeConfigBytes(bytes: Uint8Array, file: string): string {
  let start = 0;
  if (bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) start = 3;
  const body = bytes.subarray(start);
  const nul = body.indexOf(0);
  if (nul >= 0) {
    const { line, column } = position(body, nul);
    throw new ConfigError({
      code: 'CONFIG_PARSE',
      file,
      line,
      problem: `the file contains a NUL byte at column ${column}; a configuration file must be text.`,
      remedy: 'Remove the stray byte (was the file truncated or overwritten?).',
    });
  }
  const bad = firstInvalidUtf8(body);
  if (bad >= 0) {
    const { line, column } = position(body, bad);
    throw new ConfigError({
      code: 'CONFIG_PARSE',
      file,
      line,
      problem: `the file is not valid UTF-8: byte 0x${body[bad]!.toString(16).padStart(2, '0')} at column ${column}.`,
      remedy: 'Save the file as UTF-8.',
    });
  }
  return new TextDecoder('utf-8').decode(body);
}

/** Line and column (both from 1, column in bytes) of a byte offset, counting lines as Python does. */
function position(bytes: Uint8Array, offset: number): { line: number; column: number } {
  let line = 1;
  let lineStart = 0;
  for (let i = 0; i < offset; i++) {
    const b = bytes[i];
    if (b === 0x0a || (b === 0x0d && bytes[i + 1] !== 0x0a)) {
      line++;
      lineStart = i + 1;
    }
  }
  return { line, column: offset - lineStart + 1 };
}

/** Offset of the first byte that is not part of a well-formed UTF-8 sequence, or -1. */
function firstInvalidUtf8(bytes: Uint8Array): number {
  let i = 0;
  while (i < bytes.length) {
    const b = bytes[i]!;
    if (b < 0x80) {
      i++;
      continue;
    }
    let need: number;
    let min: number;
    let cp: number;
    if (b >= 0xc2 && b <= 0xdf) {
      need = 1;
      min = 0x80;
      cp = b & 0x1f;
    } else if (b >= 0xe0 && b <= 0xef) {
      need = 2;
      min = 0x800;
      cp = b & 0x0f;
    } else if (b >= 0xf0 && b <= 0xf4) {
      need = 3;
      min = 0x10000;
      cp = b & 0x07;
    } else {
      return i;
    }
    for (let k = 1; k <= need; k++) {
      const c = bytes[i + k];
      if (c === undefined || (c & 0xc0) !== 0x80) return i;
      cp = (cp << 6) | (c & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
    i += need + 1;
  }
  return -1;
}
