/**
 * nova's AggregateInstanceExtraSpecsFilter
 * (nova/scheduler/filters/aggregate_instance_extra_specs.py): every flavor
 * extra spec that is unscoped or scoped `aggregate_instance_extra_specs:`
 * must be matched (nova's operators, extra-specs-ops.ts) by one of the
 * values the host's aggregates give that key — each aggregate value split
 * on commas and stripped (nova's aggregate_metadata_get_by_host). A key no
 * aggregate of the host has fails the host. As in nova, unscoped keys count
 * here too: a flavor with an unscoped extra spec lands only on hosts whose
 * aggregates name it (nova's known clash with ComputeCapabilitiesFilter;
 * scope the key to avoid it).
 */
import { NovaletError } from '../../config/novalet-error.js';
import type { HostView } from '../host-state/host-view.js';
import { matchExtraSpec } from './extra-specs-ops.js';
import type { HostFilter } from './host-filter.js';

const SCOPE = 'aggregate_instance_extra_specs';

/** nova's aggregate_metadata_get_by_host: each key's values over the host's aggregates. */
export function aggregateMetadata(host: HostView): Map<string, Set<string>> {
  const metadata = new Map<string, Set<string>>();
  for (const aggregate of host.report.aggregates) {
    for (const [key, value] of Object.entries(aggregate.metadata)) {
      const values = metadata.get(key) ?? new Set<string>();
      for (const part of value.split(',')) values.add(part.replace(/^[\s\x1c-\x1f]+|[\s\x1c-\x1f]+$/gu, ''));
      metadata.set(key, values);
    }
  }
  return metadata;
}

export const aggregateInstanceExtraSpecsFilter: HostFilter = {
  name: 'AggregateInstanceExtraSpecsFilter',
  hostPasses(host, spec) {
    const specs = Object.entries(spec.flavor.extra_specs);
    if (specs.length === 0) return null;
    const metadata = aggregateMetadata(host);
    for (const [fullKey, req] of specs) {
      // Only the first colon separates the scope (key.split(':', 1)).
      const colon = fullKey.indexOf(':');
      if (colon >= 0 && fullKey.slice(0, colon) !== SCOPE) continue;
      const key = colon >= 0 ? fullKey.slice(colon + 1) : fullKey;
      const values = metadata.get(key);
      if (!values || values.size === 0) return `no aggregate of the host has the key '${key}' (extra spec ${fullKey})`;
      try {
        if (![...values].some((value) => matchExtraSpec(value, req))) return `its aggregates give ${key} = ${[...values].map((v) => `'${v}'`).join(', ')}, none of which satisfies ${fullKey}='${req}'`;
      } catch (err) {
        if (err instanceof NovaletError && err.code === 'EXTRA_SPEC_NOT_COMPARABLE') return err.message;
        throw err;
      }
    }
    return null;
  },
};
