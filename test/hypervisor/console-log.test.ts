import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { lastLines } from '../../hypervisor/instance/console-log.js';

describe('console log', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'novalet-console-'));

  it('gives the last N lines, without carriage returns', async () => {
    const file = path.join(dir, 'small.log');
    writeFileSync(file, 'one\r\ntwo\r\nthree\r\n');
    expect(await lastLines(file, 2)).toEqual(['two', 'three']);
    expect(await lastLines(file, 10)).toEqual(['one', 'two', 'three']);
    expect(await lastLines(file, 0)).toEqual([]);
  });

  it('reads only the end of a large log, and never a cut line', async () => {
    const file = path.join(dir, 'large.log');
    const lines = Array.from({ length: 50_000 }, (_, i) => `line ${i} ${'x'.repeat(i % 37)}`);
    writeFileSync(file, `${lines.join('\n')}\n`);
    expect(await lastLines(file, 3)).toEqual(lines.slice(-3));
    expect(await lastLines(file, 5000)).toEqual(lines.slice(-5000));
  });

  it('is empty for a guest that has not written yet', async () => {
    expect(await lastLines(path.join(dir, 'absent.log'), 5)).toEqual([]);
  });
});
