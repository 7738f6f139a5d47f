/**
 * Benchmark: how long `novalet validate` takes on a warm machine (target:
 * within 0.5 s). Baseline in the same run: a bare `node -e 0`, so that a
 * noisy machine shows up in both columns. Run after `npm run build`:
 *   node dist/bench/validate-latency.js [runs]
 * and record the printed table in bench/RESULTS.md.
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const top = path.resolve(here, '../..');
const cli = path.join(top, 'dist/cli/main.js');
const sample = path.join(top, 'etc/novalet.conf.sample');
const runs = Number(process.argv[2] ?? 20);

function timeOnce(args: string[]): number {
  const start = process.hrtime.bigint();
  const result = spawnSync(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  if (result.status !== 0 && result.status !== 1) {
    throw new Error(`${args.join(' ')} exited ${result.status}: ${result.stderr.toString()}`);
  }
  return ms;
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

const validateArgs = [cli, 'validate', '--config-file', sample];
const baselineArgs = ['-e', '0'];
const v: number[] = [];
const b: number[] = [];
// Warm the page cache and libvirt's library load before measuring.
timeOnce(validateArgs);
timeOnce(baselineArgs);
for (let i = 0; i < runs; i++) {
  // Alternate the two so that background noise hits both alike.
  v.push(timeOnce(validateArgs));
  b.push(timeOnce(baselineArgs));
}
v.sort((x, y) => x - y);
b.sort((x, y) => x - y);
const row = (name: string, s: number[]) =>
  `| ${name} | ${runs} | ${percentile(s, 50).toFixed(0)} | ${percentile(s, 95).toFixed(0)} | ${(s[s.length - 1] ?? NaN).toFixed(0)} |`;
console.log('| command | runs | p50 ms | p95 ms | max ms |');
console.log('|---|---|---|---|---|');
console.log(row('novalet validate (sample config)', v));
console.log(row('baseline: node -e 0', b));
const p95 = percentile(v, 95);
console.log(`\ntarget: validate within 500 ms on a warm machine: ${p95 <= 500 ? 'met' : 'NOT met'} (p95 ${p95.toFixed(0)} ms)`);
