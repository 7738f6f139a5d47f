import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ERROR_CODES } from '../../config/error-codes.js';

/** The product's sources (what raises errors), without the catalogue itself. */
const top = path.resolve(import.meta.dirname, '../..');
function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const full = path.join(dir, name);
    if (statSync(full).isDirectory()) return sources(full);
    return name.endsWith('.ts') && full !== path.join(top, 'config/error-codes.ts') ? [full] : [];
  });
}
const product = ['config', 'hypervisor', 'messaging', 'service', 'agent', 'scheduler-filters', 'cli'].flatMap((folder) => sources(path.join(top, folder)));
const texts = new Map(product.map((file) => [path.relative(top, file), readFileSync(file, 'utf8')]));

describe('the error-code catalogue (config/error-codes.ts)', () => {
  it('gives every code one meaning, as a sentence', () => {
    for (const [code, meaning] of Object.entries(ERROR_CODES)) {
      expect(code).toMatch(/^[A-Z][A-Z0-9]*(_[A-Z0-9]+)+$|^INTERNAL$/);
      expect(meaning, code).toMatch(/^[A-Za-z$].{20,}\.$/);
    }
  });

  it('has no code that nothing raises or records', () => {
    const unused = Object.keys(ERROR_CODES).filter((code) => ![...texts.values()].some((text) => text.includes(`'${code}'`)));
    expect(unused).toEqual([]);
  });

  it('knows every code the product raises', () => {
    const raised = new Set<string>();
    for (const text of texts.values()) {
      for (const match of text.matchAll(/(?:Error|super)\(\s*'([A-Z][A-Z0-9_]+)'|\bcode: '([A-Z][A-Z0-9_]+)'/g)) raised.add((match[1] ?? match[2]) as string);
    }
    expect(raised.size).toBeGreaterThan(30);
    expect([...raised].filter((code) => !(code in ERROR_CODES))).toEqual([]);
  });

  it('raises NO_EMULATOR in one place, with one message (it had four)', () => {
    const sites = [...texts].filter(([, text]) => text.includes("'NO_EMULATOR'")).map(([file]) => file);
    expect(sites).toEqual(['hypervisor/host/tools.ts']);
  });
});
