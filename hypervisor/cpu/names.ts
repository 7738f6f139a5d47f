import { readFileSync } from 'node:fs';
import path from 'node:path';

/**
 * The x86 CPU model and feature names libvirt knows: its cpu_map
 * (/usr/share/libvirt/cpu_map, the list `virsh cpu-models x86_64` prints and
 * nova checks cpu_models against), and the "did you mean" for names it does
 * not know. A name outside the cpu_map is a mistake in the configuration or
 * the file wherever it is used; a known model that one host cannot give is
 * that host's business (the domain capabilities say so).
 */

export const CPU_MAP = '/usr/share/libvirt/cpu_map';

let x86Features: Set<string> | null = null;
let x86Models: string[] | null = null;

/** libvirt's own list of x86 CPU feature names (its cpu_map), read once. */
export function knownX86Features(file = path.join(CPU_MAP, 'x86_features.xml')): Set<string> {
  x86Features ??= new Set([...readFileSync(file, 'utf8').matchAll(/<feature name='([^']+)'/g)].map((m) => m[1] as string));
  return x86Features;
}

/** libvirt's x86 CPU model names (the files index.xml includes for x86), read once. */
export function knownX86Models(dir = CPU_MAP): string[] {
  if (x86Models) return x86Models;
  const index = readFileSync(path.join(dir, 'index.xml'), 'utf8');
  const x86 = /<arch name='x86'>([\s\S]*?)<\/arch>/.exec(index)?.[1] ?? '';
  const files = [...x86.matchAll(/<include filename='([^']+)'/g)].map((m) => m[1] as string).filter((f) => !/_(features|vendors)\.xml$/.test(f));
  x86Models = files.flatMap((file) => [...readFileSync(path.join(dir, file), 'utf8').matchAll(/<model name='([^']+)'>/g)].map((m) => m[1] as string));
  return x86Models;
}

/** Edit distance, for "did you mean": model names are short. */
function distance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min((previous[j] as number) + 1, (current[j - 1] as number) + 1, (previous[j - 1] as number) + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = current;
  }
  return previous[b.length] as number;
}

/** Names the operator probably meant: a misspelling (two edits), or the family named without its variant (Skylake → Skylake-Client). */
export function closeNames(name: string, names: readonly string[]): string[] {
  const lower = name.toLowerCase();
  // Long input is no misspelling of a short name; and the distance is quadratic.
  if (lower.length > 64) return [];
  return names.filter((n) => {
    const candidate = n.toLowerCase();
    return distance(lower, candidate) <= 2 || candidate.startsWith(`${lower}-`);
  });
}

/** libvirt's spelling of a feature written with '_' for '.' or '-' (sse4_2 → sse4.2), or null. */
export function featureSpelling(name: string, known: ReadonlySet<string>): string | null {
  return [name.replace(/_/g, '.'), name.replace(/_/g, '-'), name.replace(/\./g, '_'), name.replace(/-/g, '_')].find((n) => n !== name && known.has(n)) ?? null;
}
