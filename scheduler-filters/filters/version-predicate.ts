/**
 * What ImagePropertiesFilter asks of `img_hv_requested_version`: Python's
 * distutils VersionPredicate over StrictVersion, as nova uses them
 * (`VersionPredicate('image_prop (%s)' % required).satisfied_by(version)`):
 * comma-separated comparisons (`<`, `<=`, `==`, `>`, `>=`, `!=`), each
 * against a strict version `major.minor[.patch][a|bN]`, all of which must
 * hold. Where distutils raises (a comparison or version it cannot read),
 * null with why, so that the host fails the filter with that reason.
 */

/** A StrictVersion: (major, minor, patch) and an optional pre-release ('a' or 'b', number). */
interface StrictVersion {
  numbers: [number, number, number];
  pre: [string, number] | null;
}

const STRICT = /^(\d+)\.(\d+)(?:\.(\d+))?(?:([ab])(\d+))?$/;
const COMPARISON = /^\s*(<=|>=|<|>|!=|==)\s*([^\s,]+)\s*$/;

function strictVersion(text: string): StrictVersion | null {
  const m = STRICT.exec(text);
  if (!m) return null;
  return { numbers: [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)], pre: m[4] ? [m[4], Number(m[5])] : null };
}

/** StrictVersion's ordering: the numbers, then a pre-release before none, 'a' before 'b'. */
function compare(a: StrictVersion, b: StrictVersion): number {
  for (let i = 0; i < 3; i++) if (a.numbers[i] !== b.numbers[i]) return a.numbers[i]! - b.numbers[i]!;
  if (!a.pre && !b.pre) return 0;
  if (!a.pre) return 1;
  if (!b.pre) return -1;
  if (a.pre[0] !== b.pre[0]) return a.pre[0] < b.pre[0] ? -1 : 1;
  return a.pre[1] - b.pre[1];
}

const HOLDS: Record<string, (order: number) => boolean> = {
  '<': (o) => o < 0,
  '<=': (o) => o <= 0,
  '==': (o) => o === 0,
  '>': (o) => o > 0,
  '>=': (o) => o >= 0,
  '!=': (o) => o !== 0,
};

/** Whether `version` satisfies every comparison of `required` (e.g. ">= 6.0, < 9.0"); `{ error }` where distutils raises. */
export function versionSatisfies(version: string, required: string): { satisfied: boolean } | { error: string } {
  const have = strictVersion(version);
  if (!have) return { error: `'${version}' is not a version distutils reads (major.minor[.patch])` };
  let satisfied = true;
  for (const part of required.split(',')) {
    const m = COMPARISON.exec(part);
    if (!m) return { error: `'${part.trim()}' is not a comparison such as '>= 6.0'` };
    const wanted = strictVersion(m[2]!);
    if (!wanted) return { error: `'${m[2]}' is not a version distutils reads (major.minor[.patch])` };
    if (!HOLDS[m[1]!]!(compare(have, wanted))) satisfied = false;
  }
  return { satisfied };
}

/** oslo's versionutils.convert_version_to_str: 6002000 → "6.2.0" (three digits a part, leading zeros dropped). */
export function versionString(versionInt: number): string {
  const parts: string[] = [];
  let rest = Math.trunc(versionInt);
  while (rest !== 0) {
    parts.unshift(String(rest % 1000));
    rest = Math.trunc(rest / 1000);
  }
  return parts.join('.');
}
