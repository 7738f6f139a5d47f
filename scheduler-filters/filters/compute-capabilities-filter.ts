/**
 * nova's ComputeCapabilitiesFilter
 * (nova/scheduler/filters/compute_capabilities_filter.py): every flavor
 * extra spec scoped `capabilities:` — and every unscoped one that names an
 * attribute the host has (or a key of its stats) — is matched with nova's
 * operators (extra-specs-ops.ts) against str() of the host's value
 * (host-state/capability-attributes.ts). Nested scopes read into dicts and
 * into JSON text (`capabilities:cpu_info:vendor`); a scope the host lacks
 * fails the host; other namespaces (`hw:`, `trait:`, …) are not this
 * filter's.
 */
import { NovaletError } from '../../config/novalet-error.js';
import { capabilityAttributes } from '../host-state/capability-attributes.js';
import { PyFloat, pyStr, type PyValue } from '../host-state/python-str.js';
import { matchExtraSpec } from './extra-specs-ops.js';
import type { HostFilter } from './host-filter.js';

type Dict = { [key: string]: PyValue };
const isDict = (v: PyValue): v is Dict => v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof PyFloat);
/** A dict's own key only ('constructor' and the like are no capability). */
const own = (d: Dict, key: string): PyValue | undefined => (Object.hasOwn(d, key) ? d[key] : undefined);

/** nova's _get_capabilities: the value at `scope`, or null where nova finds none. */
function capabilityAt(attributes: Dict, scope: readonly string[]): PyValue {
  let cap: PyValue | undefined;
  for (const [index, name] of scope.entries()) {
    if (index === 0) {
      // An attribute of the host, else its stats.
      cap = own(attributes, name) ?? own(attributes.stats as Dict, name) ?? null;
    } else {
      if (typeof cap === 'string') {
        try {
          cap = JSON.parse(cap) as PyValue;
        } catch {
          return null;
        }
      }
      // Anything but a dict has no such key (nova: getattr, then .stats, AttributeError).
      cap = isDict(cap!) ? (own(cap, name) ?? null) : null;
    }
    if (cap === null) return null;
  }
  return cap ?? null;
}

export const computeCapabilitiesFilter: HostFilter = {
  name: 'ComputeCapabilitiesFilter',
  hostPasses(host, spec) {
    const attributes = capabilityAttributes(host.report);
    for (const [key, req] of Object.entries(spec.flavor.extra_specs)) {
      let scope = key.split(':');
      if (scope.length === 1) {
        if (!Object.hasOwn(attributes, key) && !Object.hasOwn(attributes.stats as Dict, key)) continue;
      } else if (scope[0] !== 'capabilities') {
        continue;
      } else {
        scope = scope.slice(1);
      }
      const cap = capabilityAt(attributes, scope);
      if (cap === null) return `it has no capability '${scope.join(':')}' (extra spec ${key})`;
      const value = pyStr(cap);
      try {
        if (!matchExtraSpec(value, req)) return `its ${scope.join(':')} is '${value}', which does not satisfy ${key}='${req}'`;
      } catch (err) {
        if (err instanceof NovaletError && err.code === 'EXTRA_SPEC_NOT_COMPARABLE') return err.message;
        throw err;
      }
    }
    return null;
  },
};
