/**
 * The data behind `novalet config show`: every option novalet knows, its
 * effective value and where that value came from — `"<file>:<line>"` or
 * `"default"`. Secret values are masked unless asked otherwise: the
 * password inside a URL becomes `***` (`rabbit://nova:***@rmq1:5672/`),
 * any other secret is `***` entirely, and so is a value that took text from
 * a secret one through `$name` (LoadedConfig.secret).
 */

import { MASK, maskCredentialsInText, maskSecretValue, maskUrlCredentials } from './mask-credentials.js';
import type { LoadedConfig, SectionName } from './novalet-config.js';
import { OPTION_DEFINITIONS } from './option-definitions.js';

export { maskUrlCredentials };

export interface ReportedValue {
  value: unknown;
  source: string;
}

export type ConfigReport = Record<SectionName, Record<string, ReportedValue>>;

export function describeConfig(loaded: LoadedConfig, options: { showSecrets?: boolean } = {}): ConfigReport {
  const report = {} as ConfigReport;
  for (const def of OPTION_DEFINITIONS) {
    const section = (report[def.section] ??= {});
    const raw: unknown = (loaded.values[def.section] as unknown as Record<string, unknown>)[def.name];
    const source = loaded.sources[def.section][def.name] ?? 'default';
    section[def.name] = {
      value: options.showSecrets ? raw : def.secret ? maskSecret(raw) : loaded.secret[def.section][def.name] ? maskWhole(raw) : maskInText(raw),
      source: source === 'default' ? 'default' : `${source.file}:${source.line}`,
    };
  }
  return report;
}

/**
 * A value that took text from a secret option through $name (host =
 * $transport_url) is masked whole: where the secret sits in it is not known,
 * so masking only a URL's password could show it.
 */
function maskWhole(value: unknown): unknown {
  if (value === null || value === undefined || value === '') return value;
  return Array.isArray(value) ? value.map(() => MASK) : MASK;
}

/** A URL password inside any other value (a connection_uri with one, or a value joined with the line below it). */
function maskInText(value: unknown): unknown {
  if (typeof value === 'string') return maskCredentialsInText(value);
  if (Array.isArray(value)) return value.map((v: unknown) => (typeof v === 'string' ? maskCredentialsInText(v) : v));
  return value;
}

function maskSecret(value: unknown): unknown {
  if (value === null || value === undefined) return value;
  if (typeof value === 'string') return value === '' ? '' : maskSecretValue(value);
  if (Array.isArray(value)) return value.map((v) => (typeof v === 'string' ? maskSecretValue(v) : '***'));
  return '***';
}
