/**
 * oslo.config's `$name` substitution:
 *
 * - `$name` and `${name}` refer to an option; `${section.option}` (or
 *   `$section.option`) to an option of another section;
 * - `$$` and `\$` are a literal `$`; a `$` not followed by a name is kept;
 * - an undotted name is looked up in the referring option's own section
 *   first, then in [DEFAULT];
 * - a known option gives its effective value (itself substituted); an
 *   option novalet does not know gives its raw value from the files (so
 *   `server_listen = $my_ip` works though novalet has no my_ip);
 * - a reference that resolves to nothing, a cycle, or references nested
 *   too deeply is a ConfigError naming the file and line, and so is a value
 *   that expands to more than MAX_EXPANDED_CHARS (or all of them together
 *   to more than MAX_TOTAL_EXPANDED_CHARS);
 * - a value that takes text from a secret one is itself secret (Expansion).
 */

import { ConfigError } from './config-error.js';
import { normalizeSectionName } from './ini-reader.js';
import { maskUrlCredentials } from './mask-credentials.js';
import { printable } from './quote-for-message.js';

export interface Reference {
  /** Section named in a dotted reference, normalised; null when undotted. */
  section: string | null;
  name: string;
  /** The reference as written, such as `${DEFAULT.state_path}`. */
  text: string;
}

export type TemplatePart = { literal: string } | { reference: Reference };

// string.Template's pattern with oslo's idpattern, matched case-insensitively.
const ID = '[_a-z][._a-z0-9]*';
const PLACEHOLDER = new RegExp(`\\$(?:(\\$)|(${ID})|\\{(${ID})\\}|)`, 'gi');

/** Split a value into literal text and references. */
export function parseTemplate(raw: string): TemplatePart[] {
  // oslo treats "\$" as the escape "$$", "a bit more natural for users".
  const value = raw.split('\\$').join('$$');
  const parts: TemplatePart[] = [];
  let literal = '';
  let last = 0;
  for (const match of value.matchAll(PLACEHOLDER)) {
    literal += value.slice(last, match.index);
    last = match.index + match[0].length;
    const [text, escaped, named, braced] = match;
    if (escaped !== undefined) {
      literal += '$';
    } else if (named !== undefined || braced !== undefined) {
      if (literal) parts.push({ literal });
      literal = '';
      parts.push({ reference: toReference((named ?? braced)!, text) });
    } else {
      literal += '$'; // ill-formed: safe_substitute leaves it as it is
    }
  }
  literal += value.slice(last);
  if (literal) parts.push({ literal });
  return parts;
}

function toReference(key: string, text: string): Reference {
  const dot = key.indexOf('.');
  if (dot < 0) return { section: null, name: key, text };
  return { section: normalizeSectionName(key.slice(0, dot)), name: key.slice(dot + 1), text };
}

/** The option whose value is being substituted, for resolution and for error messages. */
export interface SubstitutionSite {
  /** Absent when the value is the option's default. */
  file?: string;
  line?: number;
  section: string;
  /** The option as written (or its name, for a default). */
  option: string;
  /** The text to substitute. */
  raw: string;
  secret?: boolean;
}

/** A value with its references substituted, and whether any of its text is secret. */
export interface Expansion {
  text: string;
  /**
   * The value is secret, or took text from a secret value through a
   * reference: it is shown masked, and never quoted in an error.
   */
  secret: boolean;
}

export interface SubstitutionSources {
  /**
   * The effective value of a known option as text, with whether it is
   * secret, or undefined when novalet has no such option; null when the
   * option is unset. It may call `expand` again for the option's own value.
   */
  knownOptionText(section: string, name: string): Expansion | null | undefined;
  /** The site of an option novalet does not know, as last set in the files, or undefined. */
  unknownOptionSite(section: string, name: string): SubstitutionSite | undefined;
}

const MAX_DEPTH = 32;
/**
 * The most text one value may expand to, and all values of one load
 * together. No nova option needs more; without a bound, values that double
 * the one before (`v2 = $v1$v1`, …) grow to gigabytes from a few lines.
 */
export const MAX_EXPANDED_CHARS = 64 * 1024;
export const MAX_TOTAL_EXPANDED_CHARS = 1024 * 1024;

interface Frame {
  key: string;
  site: SubstitutionSite;
}

/** Expands references with cycle detection and bounds on size; one per load. */
export class Substituter {
  private readonly stack: Frame[] = [];
  /** Expansions of options novalet does not know, by key: each is expanded once per load. */
  private readonly expanded = new Map<string, Expansion>();
  private total = 0;

  constructor(private readonly sources: SubstitutionSources) {}

  /**
   * Substitute the references in `site.raw`. `key` identifies the value
   * (one key per option) so that a value that refers back to itself is
   * caught.
   */
  expand(site: SubstitutionSite, key: string): Expansion {
    const seen = this.stack.findIndex((frame) => frame.key === key);
    if (seen >= 0) throw this.cycleError(seen, site);
    if (this.stack.length >= MAX_DEPTH) {
      throw siteError(
        this.stack[this.stack.length - 1]!.site,
        `nests references more than ${MAX_DEPTH} deep.`,
        'Refer to the value you mean directly.',
      );
    }
    const secret = site.secret ?? false;
    const parts = parseTemplate(site.raw);
    if (parts.every((p) => 'literal' in p)) return { text: parts.map((p) => ('literal' in p ? p.literal : '')).join(''), secret };
    this.stack.push({ key, site });
    try {
      const texts: string[] = [];
      let length = 0;
      let tainted = secret;
      for (const part of parts) {
        const piece = 'literal' in part ? { text: part.literal, secret: false } : this.resolve(site, part.reference);
        // Checked before the text is joined, so that a bomb fails at the first value past the bound.
        length += piece.text.length;
        if (length > MAX_EXPANDED_CHARS) {
          throw sizeError(site, `expands to more than ${MAX_EXPANDED_CHARS / 1024} KiB of text once its references are substituted.`);
        }
        texts.push(piece.text);
        tainted ||= piece.secret;
      }
      this.total += length;
      if (this.total > MAX_TOTAL_EXPANDED_CHARS) {
        throw sizeError(
          site,
          `takes the text that substitution produces past ${MAX_TOTAL_EXPANDED_CHARS / 1024 / 1024} MiB for the whole configuration.`,
        );
      }
      return { text: texts.join(''), secret: tainted };
    } finally {
      this.stack.pop();
    }
  }

  private resolve(site: SubstitutionSite, ref: Reference): Expansion {
    const sections = ref.section !== null ? [ref.section] : [...new Set([site.section, 'DEFAULT'])];
    for (const section of sections) {
      const text = this.sources.knownOptionText(section, ref.name);
      if (text === null) {
        throw siteError(
          site,
          `refers to ${ref.text}, which is unset ([${section}] ${ref.name} has no value).`,
          `Set [${section}] ${ref.name}, or write $$ for a literal '$'.`,
        );
      }
      if (text !== undefined) return text;
    }
    for (const section of sections) {
      const unknown = this.sources.unknownOptionSite(section, ref.name);
      if (unknown) {
        const key = `raw\0${section}\0${ref.name}`;
        let expansion = this.expanded.get(key);
        if (expansion === undefined) {
          expansion = this.expand(unknown, key);
          this.expanded.set(key, expansion);
        }
        return expansion;
      }
    }
    const where = sections.map((s) => `[${s}]`).join(' or ');
    throw siteError(
      site,
      `refers to ${ref.text}, which is set nowhere: there is no option ${ref.name} in ${where}.`,
      `Set it, or write $$ for a literal '$'.`,
    );
  }

  private cycleError(start: number, closing: SubstitutionSite): ConfigError {
    const frames = this.stack.slice(start);
    const chain = [...frames.map((f) => f.site), closing].map((s) => printable(`[${s.section}] ${s.option}`)).join(' → ');
    // Point at an option set in a file: defaults never refer to each other in a cycle.
    const blamed = frames.find((f) => f.site.file !== undefined)?.site ?? frames[0]!.site;
    return siteError(blamed, `refers back to itself: ${chain}.`, 'Break the cycle, or write $$ for a literal \'$\'.');
  }
}

function sizeError(site: SubstitutionSite, problem: string): ConfigError {
  return siteError(site, problem, 'Refer to shorter values: no option needs that much text.', 'CONFIG_SUBSTITUTION_TOO_LARGE');
}

function siteError(
  site: SubstitutionSite,
  problem: string,
  remedy: string,
  code: 'CONFIG_SUBSTITUTION' | 'CONFIG_SUBSTITUTION_TOO_LARGE' = 'CONFIG_SUBSTITUTION',
): ConfigError {
  return new ConfigError({
    code,
    file: site.file,
    line: site.line,
    section: site.section,
    option: site.option,
    value: site.secret ? site.raw : maskUrlCredentials(site.raw),
    secret: site.secret ?? false,
    problem,
    predicate: true,
    remedy,
  });
}
