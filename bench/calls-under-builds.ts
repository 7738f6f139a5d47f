/**
 * "A show call answered within 1 s (p99) with 60 builds queued" (issue 16).
 *
 * A real `novalet compute` (started as its unit starts it, TCG, its own
 * embedded libvirt root, a private RabbitMQ), `max_concurrent_builds` at its
 * default (10), `cpu_allocation_ratio = 40` so that 60 one-vCPU guests fit
 * on 2 cores. One instance is built first and shown throughout: `show`
 * calls of it go out every 100 ms (open loop: a slow reply does not delay
 * the next call), timed from the publish to the reply on the client's
 * clock,
 *
 * - first for 20 s with nothing queued (the baseline, same agent, same run);
 * - then while 60 builds published at once are taken on and built, until
 *   the last of them has ended (create.end or create.error).
 *
 * A call with no reply within 30 s counts as 30 s and is reported. Then
 * every instance is deleted.
 *
 *   npm run build && node dist/bench/calls-under-builds.js [rounds=1] [--builds=60] [--interval=100]
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { prepareEmbeddedRoot } from '../hypervisor/libvirt/embedded-root.js';
import { runForkSafe } from '../hypervisor/libvirt/fork-safety.js';
import { BusClient } from '../test/support/bus-client.js';
import { testGuestBuild } from '../test/support/compute-agent.js';
import { startRabbitMq, type RabbitMqHandle } from '../test/support/rabbitmq.js';
import { buildTestGuest, clearAgentRoot, delay, loadAverage, percentile, noneLeftBehind } from './agent-process.js';
import { BenchHost } from './bench-host.js';

// libvirt cannot fork QEMU from a plainly started node: see hypervisor/libvirt/fork-safety.ts.
const relaunched = await runForkSafe();
if (relaunched !== null) process.exit(relaunched);

const { values: flags, positionals } = parseArgs({
  args: process.argv.slice(2),
  allowPositionals: true,
  options: { builds: { type: 'string', default: '60' }, interval: { type: 'string', default: '100' }, rounds: { type: 'string' } },
});
const ROUNDS = Math.max(1, Number(flags.rounds ?? positionals[0] ?? 1));
const BUILDS = Math.max(1, Number(flags.builds));
const INTERVAL_MS = Math.max(10, Number(flags.interval));
const BASELINE_MS = 20_000;
const CALL_TIMEOUT_MS = 30_000;
const ROOT = '/var/tmp/novalet-bench-calls';
const CMDLINE = 'console=ttyS0 novalet.name=calls';

buildTestGuest();
const work = mkdtempSync('/var/tmp/novalet-bcb-');
const uri = await prepareEmbeddedRoot(ROOT);
let rabbit: RabbitMqHandle | null = null;
let calls: BusClient | null = null;
let builds: BusClient | null = null;
let host: BenchHost | null = null;
let failed = false;
const loads = [`start ${loadAverage()}`];

interface Phase {
  latencies: number[];
  timeouts: number;
  errors: number;
}

/** Show calls of `uuid` every INTERVAL_MS until `until()` says stop; each call's latency. */
async function showCalls(uuid: string, until: () => boolean): Promise<Phase> {
  const phase: Phase = { latencies: [], timeouts: 0, errors: 0 };
  const pending: Promise<void>[] = [];
  let next = performance.now();
  while (!until()) {
    pending.push(
      (async () => {
        const t0 = performance.now();
        try {
          const reply = await calls!.call(host!.name, 'show', { uuid }, CALL_TIMEOUT_MS);
          if (!reply.ok) phase.errors += 1;
          phase.latencies.push(performance.now() - t0);
        } catch {
          phase.timeouts += 1;
          phase.latencies.push(CALL_TIMEOUT_MS);
        }
      })(),
    );
    next += INTERVAL_MS;
    await delay(Math.max(0, next - performance.now()));
  }
  await Promise.all(pending);
  return phase;
}

const ended = (uuid: string) => builds!.events.find((e) => e.routingKey === `instance.${uuid}.create.end` || e.routingKey === `instance.${uuid}.create.error`);

async function round(r: number): Promise<{ rows: string[]; p99: number }> {
  const anchor = randomUUID();
  await builds!.send(host!.name, 'build', testGuestBuild(anchor, `anchor-${r}`, { memoryMb: 128, cmdline: CMDLINE }));
  await builds!.waitForEvent(anchor, 'create.end', 180_000);
  // The agent settles (its start-up's and the build's call threads idle) before the baseline.
  await delay(20_000);
  const t0 = performance.now();
  const baseline = await showCalls(anchor, () => performance.now() - t0 > BASELINE_MS);
  const uuids = Array.from({ length: BUILDS }, () => randomUUID());
  let published = 0;
  let queuedAt = 0;
  const storm = showCalls(anchor, () => published > 0 && uuids.every((u) => ended(u) !== undefined));
  await delay(1000);
  const tb = performance.now();
  await Promise.all(uuids.map((u, i) => builds!.send(host!.name, 'build', testGuestBuild(u, `storm-${r}-${i}`, { memoryMb: 128, cmdline: CMDLINE }))));
  published = performance.now() - tb;
  // When the broker's queue emptied: every build taken on (recorded BUILDING) and acknowledged.
  void (async () => {
    while ((await builds!.depth(`novalet.compute.${host!.name}`)) > 0) await delay(50);
    queuedAt = performance.now() - tb;
  })();
  const during = await storm;
  const lastEnd = performance.now() - tb;
  const errors = uuids.filter((u) => ended(u)?.routingKey.endsWith('create.error')).length;
  loads.push(`after round ${r + 1}'s builds ${loadAverage()}`);
  for (const u of [anchor, ...uuids]) await builds!.send(host!.name, 'delete', { uuid: u });
  for (const u of [anchor, ...uuids]) await builds!.waitForEvent(u, 'delete.end', 300_000);
  const row = (what: string, p: Phase) =>
    `| ${what} | ${p.latencies.length} | ${percentile(p.latencies, 50).toFixed(1)} | ${percentile(p.latencies, 99).toFixed(1)} | ${Math.max(...p.latencies).toFixed(1)} | ${p.timeouts} | ${p.errors} |`;
  return {
    rows: [
      row(`round ${r + 1}: nothing queued (baseline)`, baseline),
      row(`round ${r + 1}: ${BUILDS} builds published at once (${published.toFixed(0)} ms), queue empty after ${(queuedAt / 1000).toFixed(1)} s, last ended ${(lastEnd / 1000).toFixed(1)} s (${errors} create.error)`, during),
    ],
    p99: percentile(during.latencies, 99),
  };
}

try {
  await clearAgentRoot(uri, ROOT);
  rabbit = await startRabbitMq();
  calls = await BusClient.connect(rabbit.url);
  builds = await BusClient.connect(rabbit.url);
  host = await BenchHost.create('calls', { stateDir: path.join(work, 'state'), configDir: work, root: ROOT, uri, transportUrl: rabbit.transportUrl }, { DEFAULT: { cpu_allocation_ratio: '40.0', report_interval: 10 } });
  host.start();
  await host.serving();
  console.log(`${BUILDS} builds at once, max_concurrent_builds 10 (the default); show calls every ${INTERVAL_MS} ms; ${ROUNDS} round(s)\n`);
  console.log('| phase | show calls | p50 ms | p99 ms | max ms | no reply in 30 s | error replies |');
  console.log('|---|---|---|---|---|---|---|');
  const verdicts: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const { rows, p99 } = await round(r);
    for (const row of rows) console.log(row);
    verdicts.push(p99);
  }
  const worst = Math.max(...verdicts);
  console.log(`\nshow p99 with ${BUILDS} builds queued: at most ${worst.toFixed(0)} ms over ${ROUNDS} round(s) (target ≤ 1000 ms: ${worst <= 1000 ? 'met' : 'NOT met'})`);
  console.log(`load average (1, 5, 15 min): ${loads.join('; ')}`);
} catch (err) {
  failed = true;
  console.error(err);
} finally {
  if (host?.alive) {
    const code = await host.stop();
    if (code !== 0) {
      failed = true;
      console.error(`novalet compute exited ${code} after SIGTERM`);
    }
  }
  await calls?.close();
  await builds?.close();
  const left = await clearAgentRoot(uri, ROOT).catch(() => -1);
  if (left !== 0) console.error(`${left} domain(s) were left in ${ROOT} and removed`);
  const rabbitDir = rabbit?.dir;
  await rabbit?.stop();
  rmSync(work, { recursive: true, force: true });
  if (!(await noneLeftBehind([ROOT, work], rabbitDir))) failed = true;
}
process.exitCode = failed ? 1 : 0;
