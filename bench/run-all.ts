/**
 * Every benchmark, one after the other, each in a process of its own (they
 * embed libvirt, which allows one root per process): `npm run bench` after
 * `npm run build`. Record the tables they print in bench/RESULTS.md.
 * Arguments are passed to each benchmark (a number of runs or rounds; each
 * benchmark's own options, e.g. durability's --scenarios, are for running
 * it alone).
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';

const BENCHMARKS = [
  'validate-latency.js',
  'cpu-baseline.js',
  'config-fuzz.js',
  'launch-latency.js',
  'domain-xml-cost.js',
  'compute-service.js',
  'agent-memory.js',
  'records-scale.js',
  'calls-under-builds.js',
  // The longest (20 runs of each scenario by default; two of them cost 75 s of broker outage a run): last.
  'durability.js',
];
const here = import.meta.dirname;
let failed = 0;
for (const name of BENCHMARKS) {
  process.stdout.write(`\n## ${name.replace(/\.js$/, '')}\n\n`);
  const result = spawnSync(process.execPath, [path.join(here, name), ...process.argv.slice(2)], { stdio: 'inherit' });
  if (result.status !== 0) {
    failed += 1;
    process.stdout.write(`\n${name} exited ${result.status ?? result.signal}\n`);
  }
}
process.exitCode = failed === 0 ? 0 : 1;
