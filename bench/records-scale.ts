/**
 * "With 5,000 deleted records on disk: list p99 within 1.5× of an empty
 * host, idle CPU under 1%, RSS within 10 MB of an empty host" (issue 16).
 *
 * Two real `novalet compute` agents side by side (started as the unit starts
 * them, each on an embedded libvirt root of its own, one private RabbitMQ):
 * one whose `$state_path/instances.d` holds 5,000 records of deleted
 * instances, one empty. The records are written by the agent's own store
 * (InstanceStore.commit: atomic, fsynced) from a template — the record a
 * real build and delete on that host left — each with its own UUID, name,
 * request id and times within the last 12 hours, so that
 * `[compute] deleted_record_retention` (a day) keeps them. Both agents run
 * with the configuration's defaults (report_interval 10 s) but TCG and their
 * root. In each round both are started (the order alternating), left 20 s
 * (the start-up's libvirt call threads stop after 15 s idle), then:
 *
 * 1. `list` calls over the bus, one at a time, alternating between the two;
 * 2. 60 s idle, both at once: CPU from /proc/<pid>/stat, VmRSS every 5 s,
 *    open descriptors.
 *
 *   npm run build && node dist/bench/records-scale.js [rounds=2] [--records=5000] [--calls=300] [--idle=60]
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { InstanceStore } from '../agent/instance-store.js';
import type { InstanceRecord } from '../agent/instance-record.js';
import { createLogger } from '../config/logger.js';
import { prepareEmbeddedRoot } from '../hypervisor/libvirt/embedded-root.js';
import { runForkSafe } from '../hypervisor/libvirt/fork-safety.js';
import { BusClient } from '../test/support/bus-client.js';
import { testGuestBuild } from '../test/support/compute-agent.js';
import { startRabbitMq, type RabbitMqHandle } from '../test/support/rabbitmq.js';
import { buildTestGuest, clearAgentRoot, cpuSeconds, delay, loadAverage, megabytes, mean, percentile, noneLeftBehind, vmStatus, type AgentOptions } from './agent-process.js';
import { BenchHost } from './bench-host.js';

// libvirt cannot fork QEMU from a plainly started node: see hypervisor/libvirt/fork-safety.ts.
const relaunched = await runForkSafe();
if (relaunched !== null) process.exit(relaunched);

const { values: flags, positionals } = parseArgs({
  args: process.argv.slice(2),
  allowPositionals: true,
  options: { records: { type: 'string', default: '5000' }, calls: { type: 'string', default: '300' }, idle: { type: 'string', default: '60' }, rounds: { type: 'string' } },
});
const ROUNDS = Math.max(1, Number(flags.rounds ?? positionals[0] ?? 2));
const RECORDS = Number(flags.records);
const CALLS = Math.max(10, Number(flags.calls));
const IDLE_S = Math.max(5, Number(flags.idle));
const ROOTS = ['/var/tmp/novalet-bench-records-1', '/var/tmp/novalet-bench-records-2'];
/** The defaults (report_interval 10 s) but for what a benchmark host needs. */
const OPTIONS: AgentOptions = { DEFAULT: { report_interval: null, graceful_shutdown_timeout: null, cpu_allocation_ratio: null } };

interface Sample {
  round: number;
  listMs: number[];
  cpuPercent: number;
  rssMiB: number[];
  anonMiB: number;
  fds: number;
  servingMs: number;
  readRecordsMs: number;
}

buildTestGuest();
const work = mkdtempSync('/var/tmp/novalet-brs-');
const uris = await Promise.all(ROOTS.map((r) => prepareEmbeddedRoot(r)));
let rabbit: RabbitMqHandle | null = null;
let client: BusClient | null = null;
const hosts: BenchHost[] = [];
let failed = false;
const loads = [`start ${loadAverage()}`];

/** One build and delete on the host, so that its store writes a real deleted record: the template. */
async function templateRecord(host: BenchHost): Promise<InstanceRecord> {
  host.start();
  await host.serving();
  const uuid = randomUUID();
  await client!.send(host.name, 'build', testGuestBuild(uuid, 'template', { memoryMb: 128, cmdline: 'console=ttyS0 novalet.name=scale' }));
  await client!.waitForEvent(uuid, 'create.end', 180_000);
  await client!.send(host.name, 'delete', { uuid });
  await client!.waitForEvent(uuid, 'delete.end', 120_000);
  const code = await host.stop();
  if (code !== 0) throw new Error(`the template host exited ${code}`);
  return JSON.parse(readFileSync(path.join(host.stateDir, 'instances.d', `${uuid}.json`), 'utf8')) as InstanceRecord;
}

/** `count` deleted records like `template`, written by the agent's store; ms taken. */
async function writeRecords(dir: string, template: InstanceRecord, count: number): Promise<number> {
  const store = new InstanceStore(dir, createLogger({ name: 'records-scale' }));
  await store.load();
  const t0 = performance.now();
  const now = Date.now();
  const one = async (i: number) => {
    const uuid = randomUUID();
    const updated = now - Math.floor(Math.random() * 12 * 3600_000);
    const origin = template.origin ? { ...template.origin, messageId: randomUUID(), body: { ...(template.origin.body as object), instance: { ...(template.origin.body as { instance: object }).instance, uuid, name: `scale-${i}` } } } : undefined;
    const record: InstanceRecord = { ...template, uuid, name: `scale-${i}`, createdAt: new Date(updated - 60_000).toISOString(), updatedAt: new Date(updated).toISOString(), ...(origin ? { origin } : {}) };
    await store.commit(record);
  };
  // Eight writes at a time (each fsyncs a file and the folder).
  for (let i = 0; i < count; i += 8) await Promise.all(Array.from({ length: Math.min(8, count - i) }, (_, k) => one(i + k)));
  await store.settle();
  return performance.now() - t0;
}

const fdCount = (pid: number) => readdirSync(`/proc/${pid}/fd`).length;

async function measureRound(round: number, empty: BenchHost, loaded: BenchHost): Promise<[Sample, Sample]> {
  const order = round % 2 === 0 ? [empty, loaded] : [loaded, empty];
  for (const h of order) {
    h.start();
    await h.serving();
  }
  await delay(20_000);
  const samples = [empty, loaded].map((h): Sample => {
    const serving = h.lines('novalet compute is serving')[0];
    const read = h.agent!.lines.find((l) => l.step === 'read the instance records and the outbox');
    return { round, listMs: [], cpuPercent: 0, rssMiB: [], anonMiB: 0, fds: 0, servingMs: Number(serving?.ms ?? NaN), readRecordsMs: Number(read?.ms ?? NaN) };
  }) as [Sample, Sample];
  // 1. list calls, alternating (the round's order first).
  for (let i = 0; i < CALLS; i++) {
    for (const h of i % 2 === 0 ? order : [...order].reverse()) {
      const t0 = performance.now();
      const reply = await client!.call(h.name, 'list', {}, 30_000);
      const ms = performance.now() - t0;
      if (!reply.ok) throw new Error(`list on ${h.name} failed: ${JSON.stringify(reply.error)}`);
      samples[h === empty ? 0 : 1].listMs.push(ms);
    }
  }
  // 2. idle, both at once.
  const pids = [empty.pid, loaded.pid];
  const cpu0 = pids.map(cpuSeconds);
  const t0 = performance.now();
  for (let s = 0; s < IDLE_S; s += 5) {
    await delay(5000);
    pids.forEach((pid, i) => samples[i]!.rssMiB.push(vmStatus(pid).rssMb));
  }
  const wall = (performance.now() - t0) / 1000;
  pids.forEach((pid, i) => {
    samples[i]!.cpuPercent = ((cpuSeconds(pid) - cpu0[i]!) / wall) * 100;
    samples[i]!.anonMiB = vmStatus(pid).anonMb;
    samples[i]!.fds = fdCount(pid);
  });
  for (const h of [empty, loaded]) {
    const code = await h.stop();
    if (code !== 0) throw new Error(`${h.name} exited ${code} after SIGTERM`);
  }
  return samples;
}

const results: [Sample, Sample][] = [];
try {
  for (const [i, root] of ROOTS.entries()) await clearAgentRoot(uris[i]!, root);
  rabbit = await startRabbitMq();
  client = await BusClient.connect(rabbit.url);
  const where = (name: string, i: number) => ({ stateDir: path.join(work, name), configDir: work, root: ROOTS[i]!, uri: uris[i]!, transportUrl: rabbit!.transportUrl });
  const empty = await BenchHost.create('scale-empty', where('empty', 0), OPTIONS);
  const loaded = await BenchHost.create('scale-loaded', where('loaded', 1), OPTIONS);
  hosts.push(empty, loaded);
  const template = await templateRecord(loaded);
  const writeMs = await writeRecords(path.join(loaded.stateDir, 'instances.d'), template, RECORDS);
  const files = readdirSync(path.join(loaded.stateDir, 'instances.d')).filter((f) => f.endsWith('.json')).length;
  console.log(`${files} records of deleted instances in ${loaded.name}'s instances.d (${RECORDS} written by InstanceStore.commit in ${(writeMs / 1000).toFixed(1)} s, one from a real build and delete), ${ROUNDS} round(s), ${CALLS} list calls on each per round, ${IDLE_S} s idle\n`);
  for (let round = 0; round < ROUNDS; round++) {
    results.push(await measureRound(round, empty, loaded));
    loads.push(`after round ${round + 1} ${loadAverage()}`);
  }

  const all = (i: 0 | 1) => results.map((r) => r[i]);
  const row = (what: string, i: 0 | 1) => {
    const s = all(i);
    const list = s.flatMap((x) => x.listMs);
    const rss = s.map((x) => mean(x.rssMiB));
    return `| ${what} | ${s.length} | ${percentile(list, 50).toFixed(1)} | ${percentile(list, 99).toFixed(1)} | ${Math.max(...list).toFixed(1)} | ${s.map((x) => x.cpuPercent.toFixed(2)).join(' / ')} | ${rss.map((x) => x.toFixed(1)).join(' / ')} | ${s.map((x) => x.anonMiB.toFixed(1)).join(' / ')} | ${s.map((x) => x.fds).join(' / ')} | ${s.map((x) => x.readRecordsMs).join(' / ')} | ${s.map((x) => x.servingMs).join(' / ')} |`;
  };
  console.log(`| host | rounds | list p50 ms | list p99 ms | list max ms | idle CPU % (${IDLE_S} s, each round) | VmRSS MiB idle (each round) | RssAnon MiB | open descriptors | reading the records, ms | start → serving, ms |`);
  console.log('|---|---|---|---|---|---|---|---|---|---|---|');
  console.log(row('empty', 0));
  console.log(row(`${RECORDS} deleted records`, 1));
  const p99 = (i: 0 | 1) => percentile(all(i).flatMap((x) => x.listMs), 99);
  const ratio = p99(1) / p99(0);
  const cpu = Math.max(...all(1).map((x) => x.cpuPercent));
  const rssDiff = results.map(([e, l]) => megabytes(mean(l.rssMiB) - mean(e.rssMiB)));
  console.log(`\n- list p99: ${p99(1).toFixed(1)} against ${p99(0).toFixed(1)} ms, ×${ratio.toFixed(2)} (target ≤ ×1.5: ${ratio <= 1.5 ? 'met' : 'NOT met'})`);
  console.log(`- idle CPU with the records: at most ${cpu.toFixed(2)} % of a core (target < 1 %: ${cpu < 1 ? 'met' : 'NOT met'}); empty host ${all(0).map((x) => x.cpuPercent.toFixed(2)).join(' / ')} %`);
  console.log(`- VmRSS, loaded minus empty, each round: ${rssDiff.map((d) => `${d >= 0 ? '+' : ''}${d.toFixed(1)}`).join(' / ')} MB (target ≤ 10 MB: ${Math.max(...rssDiff) <= 10 ? 'met' : 'NOT met'})`);
  console.log(`load average (1, 5, 15 min): ${loads.join('; ')}`);
} catch (err) {
  failed = true;
  console.error(err);
} finally {
  for (const h of hosts) if (h.alive) await h.stop();
  await client?.close();
  for (const [i, root] of ROOTS.entries()) {
    const left = await clearAgentRoot(uris[i]!, root).catch(() => -1);
    if (left !== 0) console.error(`${left} domain(s) were left in ${root} and removed`);
  }
  const rabbitDir = rabbit?.dir;
  await rabbit?.stop();
  rmSync(work, { recursive: true, force: true });
  if (!(await noneLeftBehind([...ROOTS, work], rabbitDir))) failed = true;
}
process.exitCode = failed ? 1 : 0;
