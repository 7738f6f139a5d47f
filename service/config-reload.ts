/**
 * What a configuration reload (SIGHUP) changes, as oslo.config's
 * `mutate_config_files` judges it for an OpenStack service run by
 * oslo.service: the files are read again; an option marked mutable that
 * changed takes its new value, logged at INFO as `Option <group>.<option>
 * changed from [old] to [new]`; any other option that changed keeps the
 * value the service started with, with a WARNING `Ignoring change to
 * immutable option <group>.<option>` (here followed by what it keeps and
 * that a restart applies it). As in oslo, the warnings come first, then the
 * changes, [DEFAULT] first and the rest by section and option.
 *
 * Values are shown as `novalet config show` shows them
 * (config/config-report.ts): a secret masked, a URL's password masked.
 *
 * Reading the files is the caller's (loadConfig, with the same
 * --config-file and --config-dir as at start); a reload that cannot be read
 * is a ConfigError there, and the service keeps the configuration it has.
 */
import { isDeepStrictEqual } from 'node:util';
import { describeConfig } from '../config/config-report.js';
import type { Logger } from '../config/logger.js';
import type { LoadedConfig, SectionName } from '../config/novalet-config.js';
import { OPTION_DEFINITIONS, SECTION_ORDER } from '../config/option-definitions.js';

export interface Change {
  /** `DEFAULT.debug`, `api.port`. */
  option: string;
  section: SectionName;
  name: string;
  /** The value in effect before, as `config show` shows it (secrets masked). */
  old: unknown;
  /** The value the files give now, shown alike. */
  new: unknown;
}

export interface ReloadOutcome {
  /** Mutable options that changed: the service applies them (their values are in `effective`). */
  applied: Change[];
  /** Other options that changed: they keep their value until the service restarts. */
  ignored: Change[];
  /**
   * The configuration in effect after the reload: the mutable options from
   * `next`, every other one from `previous`. Pass it as `previous` at the
   * next reload, so that an immutable change is warned of again while the
   * files differ from what runs (as oslo compares with the values at start).
   */
  effective: LoadedConfig;
}

/** A value as `config show` writes it in text. */
function shown(value: unknown): string {
  if (Array.isArray(value)) return value.join(',');
  if (value === null || value === undefined) return '<None>';
  return String(value);
}

/** `[DEFAULT]` first, then the sections and, in each, the options by name (oslo's order for its log lines). */
function byPlace(a: { section: SectionName; name: string }, b: { section: SectionName; name: string }): number {
  return SECTION_ORDER.indexOf(a.section) - SECTION_ORDER.indexOf(b.section) || a.name.localeCompare(b.name);
}

const KNOWN = new Set(OPTION_DEFINITIONS.map((def) => `${def.section}.${def.name}`));

/**
 * Compares `previous` (the configuration in effect) with `next` (the files
 * read again), logs each change as oslo.config does and says which apply.
 * `mutable` names the options the service can change while it runs, as
 * `<section>.<option>` ('DEFAULT.debug', 'DEFAULT.report_interval').
 */
export function reloadConfig(previous: LoadedConfig, next: LoadedConfig, mutable: readonly string[], log: Logger): ReloadOutcome {
  const unknown = mutable.filter((option) => !KNOWN.has(option));
  // A name the option table does not have would never apply: a mistake in the service's list, not in the files.
  if (unknown.length > 0) throw new TypeError(`reloadConfig: no such option ${unknown.join(', ')} (mutable options are named <section>.<option>, as DEFAULT.debug)`);
  const mutableSet = new Set(mutable);
  const before = describeConfig(previous);
  const after = describeConfig(next);
  const applied: Change[] = [];
  const ignored: Change[] = [];
  for (const def of [...OPTION_DEFINITIONS].sort(byPlace)) {
    const oldValue: unknown = (previous.values[def.section] as unknown as Record<string, unknown>)[def.name];
    const newValue: unknown = (next.values[def.section] as unknown as Record<string, unknown>)[def.name];
    if (isDeepStrictEqual(oldValue, newValue)) continue;
    const option = `${def.section}.${def.name}`;
    const change: Change = { option, section: def.section, name: def.name, old: before[def.section][def.name]!.value, new: after[def.section][def.name]!.value };
    (mutableSet.has(option) ? applied : ignored).push(change);
  }
  for (const change of ignored) {
    log.warn(
      { component: 'config', option: change.option, running: change.old, files: change.new },
      `Ignoring change to immutable option ${change.option}: the service keeps [${shown(change.old)}] (the files now say [${shown(change.new)}]) until it restarts`,
    );
  }
  for (const change of applied) {
    log.info({ component: 'config', option: change.option, old: change.old, new: change.new }, `Option ${change.option} changed from [${shown(change.old)}] to [${shown(change.new)}]`);
  }
  return { applied, ignored, effective: effectiveConfig(previous, next, mutableSet) };
}

/** `previous` with the mutable options (value, source, setting, secrecy) taken from `next`. */
function effectiveConfig(previous: LoadedConfig, next: LoadedConfig, mutable: ReadonlySet<string>): LoadedConfig {
  const effective: LoadedConfig = {
    values: structuredClone(previous.values),
    sources: structuredClone(previous.sources),
    settings: structuredClone(previous.settings),
    secret: structuredClone(previous.secret),
    files: [...next.files],
    ignored: [...next.ignored],
    deprecated: [...next.deprecated],
  };
  for (const option of mutable) {
    const dot = option.indexOf('.');
    const section = option.slice(0, dot) as SectionName;
    const name = option.slice(dot + 1);
    const values = effective.values[section] as unknown as Record<string, unknown>;
    values[name] = structuredClone((next.values[section] as unknown as Record<string, unknown>)[name]);
    copyEntry(effective.sources[section], next.sources[section], name);
    copyEntry(effective.settings[section], next.settings[section], name);
    copyEntry(effective.secret[section], next.secret[section], name);
  }
  return effective;
}

function copyEntry<T>(into: Record<string, T>, from: Record<string, T>, name: string): void {
  if (name in from) into[name] = structuredClone(from[name]!);
  else delete into[name];
}
