/**
 * Loading novalet's configuration the way oslo.config loads nova's:
 *
 * - the files named with --config-file, in order, then for each
 *   --config-dir every `*.conf` in it in sorted order; with neither,
 *   /etc/novalet/novalet.conf (all defaults when it does not exist);
 * - later files win; within a file the last assignment wins; a deprecated
 *   name counts like the new one, except that within one file the new name
 *   wins (oslo looks up the new name first in each file, newest file first);
 * - sections and options novalet does not know are ignored and listed;
 * - `$references` substituted, values converted to their types, then the
 *   CPU rules checked.
 *
 * Bad input never throws anything but ConfigError.
 */
import { closeSync, constants, fstatSync, openSync, readdirSync, readSync, statSync } from 'node:fs';
import path from 'node:path';
import { ConfigError } from './config-error.js';
import { checkCpuCompatibility } from './cpu-compatibility-rules.js';
import { decodeConfigBytes, parseIni, type IniDocument, type IniEntry } from './ini-reader.js';
import type { DeprecatedOptionUse, IgnoredOption, LoadedConfig, NovaletConfig, SectionName, Setting, ValueSource } from './novalet-config.js';
import { OPTION_DEFINITIONS, SECTION_ORDER, type OptionDefinition } from './option-definitions.js';
import { looksSecret, maskUrlCredentials } from './mask-credentials.js';
import { quoteForMessage } from './quote-for-message.js';
import { fileKind } from './state-folders.js';
import { Substituter, type SubstitutionSite } from './substitution.js';
import { convertValue, valueAsText } from './value-types.js';

export const DEFAULT_CONFIG_FILE = '/etc/novalet/novalet.conf';

export interface LoadConfigOptions {
  /** --config-file, in order; empty or absent means none. */
  configFiles?: string[] | undefined;
  /** --config-dir, in order; each contributes its `*.conf` files in sorted order. */
  configDirs?: string[] | undefined;
}

/** A file's name and content, for loading without touching the disk. */
export interface ConfigSource {
  file: string;
  text: string | Uint8Array;
}

export function loadConfig(options: LoadConfigOptions = {}): LoadedConfig {
  const files = options.configFiles ?? [];
  const dirs = options.configDirs ?? [];
  const sources: ConfigSource[] = [];
  if (files.length === 0 && dirs.length === 0) {
    const text = readConfigFile(DEFAULT_CONFIG_FILE, { missingOk: true, via: 'file' });
    if (text !== null) sources.push({ file: DEFAULT_CONFIG_FILE, text });
  } else {
    for (const file of files) sources.push({ file, text: readConfigFile(file, { missingOk: false, via: 'file' })! });
    for (const dir of dirs) {
      for (const file of confFilesIn(dir)) sources.push({ file, text: readConfigFile(file, { missingOk: false, via: 'dir' })! });
    }
  }
  return loadConfigFromSources(sources);
}

/** Load one configuration text as if it were the only file (for tests and tools). */
export function parseConfigText(text: string | Uint8Array, fileName: string): LoadedConfig {
  return loadConfigFromSources([{ file: fileName, text }]);
}

/** Load configuration texts in order (later wins), as loadConfig does after reading the files. */
export function loadConfigFromSources(sources: readonly ConfigSource[]): LoadedConfig {
  const docs = sources.map(({ file, text }) => {
    const bytes = typeof text === 'string' ? Buffer.from(text, 'utf8') : text;
    return parseIni(decodeConfigBytes(bytes, file), file);
  });
  return new ConfigResolution(docs).result();
}

/**
 * The most a configuration file may hold. nova.conf files are a few tens of
 * KiB; anything near this is not one (and `/dev/zero` or a growing log must
 * not be read into memory whole).
 */
export const MAX_CONFIG_FILE_BYTES = 1024 * 1024;

type ReadVia = 'file' | 'dir';

/**
 * Reads a configuration file: a regular file only, at most
 * MAX_CONFIG_FILE_BYTES. It is stat'ed before it is opened, because opening
 * some devices does something (/dev/watchdog arms the watchdog); opened
 * non-blocking, so that a FIFO swapped in meanwhile cannot hang the open; and
 * checked again with fstat on the descriptor, so that what is read is what
 * was checked. At most the limit plus one byte is read, so that a file that
 * grows meanwhile cannot blow the limit up.
 */
function readConfigFile(file: string, { missingOk, via }: { missingOk: boolean; via: ReadVia }): Uint8Array | null {
  let fd: number;
  try {
    const stat = statSync(file);
    if (!stat.isFile()) throw notRegular(file, fileKind(stat), via);
    fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      if (missingOk) return null;
      throw new ConfigError({
        code: 'CONFIG_FILE_MISSING',
        file,
        problem: 'the configuration file does not exist.',
        remedy: 'Check the --config-file path.',
      });
    }
    throw unreadable(file, err);
  }
  try {
    const stat = fstatSync(fd);
    if (!stat.isFile()) throw notRegular(file, fileKind(stat), via);
    // Sized by fstat; a file that grows meanwhile gets one bigger buffer, still bounded.
    let buffer = Buffer.alloc(Math.min(stat.size, MAX_CONFIG_FILE_BYTES) + 1);
    let length = 0;
    for (;;) {
      if (length === buffer.length) {
        if (length > MAX_CONFIG_FILE_BYTES) throw tooLarge(file);
        const bigger = Buffer.alloc(MAX_CONFIG_FILE_BYTES + 1);
        buffer.copy(bigger);
        buffer = bigger;
      }
      const n = readSync(fd, buffer, length, buffer.length - length, null);
      if (n === 0) return buffer.subarray(0, length);
      length += n;
    }
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw unreadable(file, err);
  } finally {
    closeSync(fd);
  }
}

function notRegular(file: string, kind: string, via: ReadVia): ConfigError {
  return new ConfigError({
    code: 'CONFIG_FILE_NOT_REGULAR',
    file,
    problem: `the configuration file is ${kind}; only a regular file is read as configuration.`,
    remedy: via === 'dir' ? 'Only regular files ending in .conf belong in a --config-dir.' : 'Name a regular file with --config-file.',
  });
}

function tooLarge(file: string): ConfigError {
  return new ConfigError({
    code: 'CONFIG_FILE_TOO_LARGE',
    file,
    problem: `the configuration file is larger than ${MAX_CONFIG_FILE_BYTES / 1024 / 1024} MiB, far more than any nova.conf.`,
    remedy: 'Check that it is the configuration file you meant.',
  });
}

function unreadable(file: string, err: unknown): ConfigError {
  const code = (err as NodeJS.ErrnoException).code;
  const why =
    code === 'EACCES' || code === 'EPERM'
      ? 'permission denied'
      : code === 'EAGAIN'
        ? 'it has nothing to read yet'
        : `${code ?? 'error'}: ${(err as Error).message}`;
  return new ConfigError({
    code: 'CONFIG_FILE_UNREADABLE',
    file,
    problem: `the configuration file cannot be read (${why}).`,
    remedy: 'Make it a readable file for the user novalet runs as.',
  });
}

/** oslo.config's sorted(glob(dir/*.conf)): hidden files excluded, sorted by name. */
function confFilesIn(dir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ConfigError({
      code: 'CONFIG_DIR_MISSING',
      file: dir,
      problem:
        code === 'ENOENT'
          ? 'the configuration directory does not exist.'
          : code === 'ENOTDIR'
            ? 'it is not a directory.'
            : `the configuration directory cannot be listed (${code ?? (err as Error).message}).`,
      remedy: 'Check the --config-dir path.',
    });
  }
  const files = names
    .filter((name) => name.endsWith('.conf') && !name.startsWith('.'))
    .map((name) => path.join(dir, name))
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return files;
}

const entryKey = (section: string, name: string): string => `${section}\0${name}`;

interface Chosen {
  entry: IniEntry;
  def: OptionDefinition;
}

/** One load: which assignment wins for each option, substitution, conversion, the CPU rules. */
class ConfigResolution {
  /** Per file, the last assignment of each section/key. */
  private readonly lastInFile: Map<string, IniEntry>[];
  /** Current and deprecated names → option. */
  private readonly names = new Map<string, { def: OptionDefinition; deprecated: boolean }>();
  private readonly chosen = new Map<OptionDefinition, Chosen>();
  private readonly evaluated = new Map<OptionDefinition, unknown>();
  private readonly settings = new Map<OptionDefinition, Setting>();
  /** Options whose effective value is secret: marked so, or taking text from a secret value. */
  private readonly secret = new Set<OptionDefinition>();
  private readonly substituter: Substituter;

  constructor(private readonly docs: IniDocument[]) {
    this.lastInFile = docs.map((doc) => {
      const map = new Map<string, IniEntry>();
      for (const entry of doc.entries) map.set(entryKey(entry.section, entry.key), entry);
      return map;
    });
    for (const def of OPTION_DEFINITIONS) {
      this.names.set(entryKey(def.section, def.name), { def, deprecated: false });
      for (const old of def.deprecatedNames) {
        this.names.set(entryKey(old.section ?? def.section, old.name), { def, deprecated: true });
      }
    }
    for (const def of OPTION_DEFINITIONS) {
      const entry = this.winningEntry(def);
      if (entry) this.chosen.set(def, { entry, def });
    }
    this.substituter = new Substituter({
      knownOptionText: (section, name) => {
        const known = this.names.get(entryKey(section, name));
        if (!known) return undefined;
        const value = this.evaluate(known.def);
        return value === null ? null : { text: valueAsText(value), secret: this.secret.has(known.def) };
      },
      unknownOptionSite: (section, name) => {
        for (let i = this.lastInFile.length - 1; i >= 0; i--) {
          const entry = this.lastInFile[i]!.get(entryKey(section, name));
          if (entry) {
            return {
              file: entry.file,
              line: entry.line,
              section: entry.section,
              option: entry.key,
              raw: entry.value,
              secret: looksSecret(entry.key, entry.value),
            };
          }
        }
        return undefined;
      },
    });
  }

  /** Newest file first; within a file the current name, then the deprecated ones. */
  private winningEntry(def: OptionDefinition): IniEntry | undefined {
    const candidates = [
      entryKey(def.section, def.name),
      ...def.deprecatedNames.map((old) => entryKey(old.section ?? def.section, old.name)),
    ];
    for (let i = this.lastInFile.length - 1; i >= 0; i--) {
      for (const key of candidates) {
        const entry = this.lastInFile[i]!.get(key);
        if (entry) return entry;
      }
    }
    return undefined;
  }

  /** The typed effective value of an option: substituted, converted. Cached. */
  private evaluate(def: OptionDefinition): unknown {
    if (this.evaluated.has(def)) return this.evaluated.get(def);
    const optionKey = `option\0${entryKey(def.section, def.name)}`;
    const chosen = this.chosen.get(def);
    let value: unknown;
    if (chosen) {
      const { entry } = chosen;
      const site: SubstitutionSite = {
        file: entry.file,
        line: entry.line,
        section: entry.section,
        option: entry.key,
        raw: entry.value,
        secret: def.secret,
      };
      const { text, secret } = this.substituter.expand(site, optionKey);
      if (secret) this.secret.add(def);
      const conversion = convertValue(def.type, text, def.default === null);
      if (!conversion.ok) {
        // A value that took text from a secret one is shown as written ('$transport_url'), never expanded.
        const substituted =
          text === entry.value || def.secret
            ? ''
            : secret
              ? '(after substitution, which takes text from a secret option) '
              : `(after substitution ${quoteForMessage(text)}) `;
        throw new ConfigError({
          code: 'CONFIG_INVALID_VALUE',
          file: entry.file,
          line: entry.line,
          section: entry.section,
          option: entry.key,
          value: def.secret ? entry.value : maskUrlCredentials(entry.value),
          secret: def.secret,
          problem: substituted + conversion.problem,
          predicate: true,
        });
      }
      value = conversion.value;
      this.settings.set(def, {
        file: entry.file,
        line: entry.line,
        section: entry.section,
        option: entry.key,
        raw: entry.value,
        text,
        secret,
      });
    } else {
      value = this.substituteDefault(def, optionKey);
    }
    this.evaluated.set(def, value);
    return value;
  }

  /** Defaults are substituted too (`$state_path/instances`), as oslo does. */
  private substituteDefault(def: OptionDefinition, optionKey: string): unknown {
    const expand = (raw: string): string => {
      const expansion = this.substituter.expand({ section: def.section, option: def.name, raw, secret: def.secret }, optionKey);
      if (expansion.secret) this.secret.add(def);
      return expansion.text;
    };
    if (def.secret) this.secret.add(def);
    if (typeof def.default === 'string') return expand(def.default);
    if (Array.isArray(def.default)) return def.default.map((item: unknown) => (typeof item === 'string' ? expand(item) : item));
    return def.default;
  }

  result(): LoadedConfig {
    const values = emptyBySection<Record<string, unknown>>();
    const sources = emptyBySection<Record<string, ValueSource>>();
    const settings = emptyBySection<Record<string, Setting>>();
    const secret = emptyBySection<Record<string, boolean>>();
    for (const def of OPTION_DEFINITIONS) {
      values[def.section][def.name] = this.evaluate(def);
      secret[def.section][def.name] = this.secret.has(def);
      const setting = this.settings.get(def);
      sources[def.section][def.name] = setting ? { file: setting.file, line: setting.line } : 'default';
      if (setting) settings[def.section][def.name] = setting;
    }
    const typed = values as unknown as NovaletConfig;
    checkCpuCompatibility(typed, (section, option) => settings[section][option]);

    const ignored: IgnoredOption[] = [];
    const deprecated: DeprecatedOptionUse[] = [];
    for (const doc of this.docs) {
      for (const entry of doc.entries) {
        const known = this.names.get(entryKey(entry.section, entry.key));
        if (!known) {
          ignored.push({ file: entry.file, line: entry.line, section: entry.section, option: entry.key });
        } else if (known.deprecated) {
          deprecated.push({
            file: entry.file,
            line: entry.line,
            section: entry.section,
            usedName: entry.key,
            name: known.def.name,
            newSection: known.def.section,
            effective: this.chosen.get(known.def)?.entry === entry,
          });
        }
      }
    }
    return {
      values: typed,
      sources: sources as LoadedConfig['sources'],
      settings: settings as LoadedConfig['settings'],
      secret: secret as LoadedConfig['secret'],
      files: this.docs.map((d) => d.file),
      ignored,
      deprecated,
    };
  }
}

function emptyBySection<T>(): Record<SectionName, T> {
  return Object.fromEntries(SECTION_ORDER.map((s) => [s, {}])) as Record<SectionName, T>;
}
