import { NovaletError } from '../config/novalet-error.js';

/** `[compute] aggregates` items, `name` or `name/key=value`, as the report's `aggregates`. */
export function aggregatesOf(items: readonly string[]): { name: string; metadata: Record<string, string> }[] {
  const byName = new Map<string, Record<string, string>>();
  for (const item of items) {
    const slash = item.indexOf('/');
    const name = slash < 0 ? item : item.slice(0, slash);
    const metadata = byName.get(name) ?? {};
    if (slash >= 0) {
      const pair = item.slice(slash + 1);
      const eq = pair.indexOf('=');
      if (eq <= 0) {
        throw new NovaletError('CONFIG_INVALID_VALUE', `[compute] aggregates item '${item}' is not name or name/key=value.`, 'Write each item as an aggregate name, or name/key=value for a metadata key.');
      }
      metadata[pair.slice(0, eq)] = pair.slice(eq + 1);
    }
    byName.set(name, metadata);
  }
  return [...byName].map(([name, metadata]) => ({ name, metadata }));
}
