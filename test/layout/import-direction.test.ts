import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

/** DESIGN.md's layout table: which top-level folders each folder may import. */
const MAY_IMPORT: Record<string, string[]> = {
  config: [],
  hypervisor: ['config'],
  messaging: ['config'],
  agent: ['config', 'hypervisor', 'messaging'],
  'scheduler-filters': ['config', 'messaging'],
  cli: ['config', 'hypervisor', 'messaging', 'agent', 'scheduler-filters'],
};

const top = path.resolve(import.meta.dirname, '../..');

function tsFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const full = path.join(dir, name);
    if (statSync(full).isDirectory()) return tsFiles(full);
    return name.endsWith('.ts') ? [full] : [];
  });
}

/** Top-level folders a file's relative imports reach into. */
export function importedFolders(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const specifiers = [...text.matchAll(/(?:from|import)\s*\(?\s*['"](\.[^'"]+)['"]/g)].map((m) => m[1] as string);
  return specifiers.map((s) => path.relative(top, path.resolve(path.dirname(file), s)).split(path.sep)[0] as string);
}

describe('import direction (DESIGN.md layout)', () => {
  for (const [folder, allowed] of Object.entries(MAY_IMPORT)) {
    it(`${folder}/ imports only ${allowed.length ? allowed.join(', ') : 'nothing of ours'}`, () => {
      const offending = tsFiles(path.join(top, folder)).flatMap((file) =>
        importedFolders(file)
          .filter((target) => target !== folder && !allowed.includes(target))
          .map((target) => `${path.relative(top, file)} → ${target}/`),
      );
      expect(offending).toEqual([]);
    });
  }

  it('sees the folder a forbidden import reaches into (the check can fail)', () => {
    const file = path.join(top, 'test/fixtures/layout/forbidden-import.ts.txt');
    expect(importedFolders(file)).toEqual(['scheduler-filters']);
    expect(MAY_IMPORT.agent).not.toContain('scheduler-filters');
  });
});
