/**
 * "0 events lost" (issue 16): the trial's fault scenarios against a real
 * `novalet compute` (TCG, the test guest by name, started as its systemd unit
 * starts it) and a private RabbitMQ, each run many times; every request's
 * answer is matched by id (bench/event-ledger.ts) and counted: lost, repeated
 * under its id (allowed), repeated without it (not allowed).
 *
 * a. kill -9 while deletes are under way, then a restart;
 * b. kill -9 while builds are under way, then a restart;
 * c. kill -9 while stops are under way, restart; then the same while starts are;
 * d. the broker down 75 s (longer than rpc_response_timeout's 60 s) while builds finish;
 * e. the same, with the agent killed (-9) and started again during the outage;
 * f. a full disk (state_path on a small tmpfs): a stop, a delete and a build
 *    (each must be answered: action.error, action.error, create.error), then
 *    the disk freed and the instances deleted.
 *
 * The kill comes at a seeded random moment within each scenario's window.
 * (d) and (e) share each outage (two agents on two libvirt roots) when both
 * are chosen. The broker goes down at once — SIGKILL, as a crash: `rabbitmqctl
 * stop_app` takes seconds here, by which time the builds have ended — and is
 * started again on the same data 75 s later (its durable queues and
 * confirmed persistent messages kept). After each disturbance a run
 * waits for every answer (3 min at most: what has not come by then is lost),
 * then for the agents' outboxes to be empty and their queues drained, then
 * 2 s more for late repeats.
 *
 *   npm run build && node dist/bench/durability.js [runs=20] [--scenarios=a,b,c,d,e,f] [--instances=3] [--outage-instances=6] [--seed=N]
 */
import { randomUUID } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { prepareEmbeddedRoot } from '../hypervisor/libvirt/embedded-root.js';
import { runForkSafe } from '../hypervisor/libvirt/fork-safety.js';
import { testGuestBuild } from '../test/support/compute-agent.js';
import { markedProcesses, startRabbitMq, type RabbitMqHandle } from '../test/support/rabbitmq.js';
import { mountSmallFileSystem, type SmallFileSystem } from '../test/support/small-filesystem.js';
import { buildTestGuest, clearAgentRoot, delay, loadAverage, processesMarked, virsh, type AgentOptions } from './agent-process.js';
import { deadStatusFiles, removeStatus, stuckDomains } from './libvirt-root-state.js';
import { BenchHost } from './bench-host.js';
import { EventLedger, sumAudits, type Audit, type RequestKind, type SentRequest } from './event-ledger.js';

// libvirt cannot fork QEMU from a plainly started node: see hypervisor/libvirt/fork-safety.ts.
const relaunched = await runForkSafe();
if (relaunched !== null) process.exit(relaunched);

const { values: flags, positionals } = parseArgs({
  args: process.argv.slice(2),
  allowPositionals: true,
  options: { scenarios: { type: 'string', default: 'a,b,c,d,e,f' }, runs: { type: 'string' }, instances: { type: 'string', default: '3' }, 'outage-instances': { type: 'string', default: '6' }, seed: { type: 'string' } },
});
const RUNS = Math.max(1, Number(flags.runs ?? positionals[0] ?? 20));
const INSTANCES = Math.max(1, Number(flags.instances));
/** Builds per host in (d) and (e): enough that some still run once the broker is down (stopping it takes ~1 s). */
const OUTAGE_INSTANCES = Math.max(1, Number(flags['outage-instances']));
const SEED = Number(flags.seed ?? Date.now() % 1_000_000);
const CHOSEN = new Set(flags.scenarios!.split(',').map((s) => s.trim()));
const OUTAGE_MS = 75_000;
const ANSWER_TIMEOUT_MS = 180_000;
/** Fixed libvirt roots, warm across runs; only this benchmark uses them. (d) and (e) run side by side, one each. */
const ROOTS = ['/var/tmp/novalet-bench-durability-1', '/var/tmp/novalet-bench-durability-2'];
/** Where a kill may fall, after the last request of the window is confirmed (a destroy here takes 1.2–1.8 s). */
const KILL_WINDOW_MS: Record<string, number> = { delete: 2500, build: 4000, stop: 2500, start: 2500 };
/** Options of every agent: reconnect within 2 s of the broker's return; a guest that ignores the power button is forced off after 10 s. */
const OPTIONS: AgentOptions = {
  DEFAULT: { report_interval: 10, shutdown_timeout: 10 },
  oslo_messaging_rabbit: { rabbit_retry_interval: 1, rabbit_interval_max: 2 },
};
const SMALL_FS_KIB = 64 * 1024;

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const rng = mulberry32(SEED);

interface Run {
  scenario: string;
  requests: SentRequest[];
  audit?: Audit;
  /** Domains the run's kills left stuck in libvirt (`paused (starting up)`, no QEMU, a start job held for ever). */
  stuck?: string[];
  /** Answers of a kind the scenario did not expect (e.g. a kill scenario's create.error), with their fault codes. */
  unexpected: string[];
  notes: string;
}

buildTestGuest();
const work = mkdtempSync('/var/tmp/novalet-bdu-');
let rabbit: RabbitMqHandle | null = null;
let ledger: EventLedger | null = null;
let smallFs: SmallFileSystem | null = null;
const hosts: BenchHost[] = [];
const runs: Run[] = [];
const times: Record<string, number> = {};
let failed = false;

const uris = await Promise.all(ROOTS.map((root) => prepareEmbeddedRoot(root)));

/** Empties a root no process holds: status files of domains without QEMU (bench/libvirt-root-state.ts) first, then every domain; what was found. */
async function clearRoot(rootIndex: number): Promise<{ domains: number; deadStatus: string[] }> {
  const root = ROOTS[rootIndex]!;
  const deadStatus = deadStatusFiles(root);
  removeStatus(root, deadStatus);
  return { domains: await clearAgentRoot(uris[rootIndex]!, root), deadStatus };
}

async function newHost(prefix: string, rootIndex: number, stateDir = path.join(work, `${prefix}-state`)): Promise<BenchHost> {
  // A killed run's domains would be unrecorded ones for this host.
  await clearRoot(rootIndex);
  const host = await BenchHost.create(prefix, { stateDir, configDir: work, root: ROOTS[rootIndex]!, uri: uris[rootIndex]!, transportUrl: rabbit!.transportUrl }, OPTIONS);
  hosts.push(host);
  host.start();
  await host.serving();
  return host;
}

async function retire(host: BenchHost): Promise<void> {
  const code = await host.stop();
  if (code !== 0) {
    failed = true;
    console.error(`novalet compute of ${host.name} exited ${code} after SIGTERM: ${host.agent?.stderr()}`);
  }
  const left = await clearRoot(ROOTS.indexOf(host.root));
  if (left.deadStatus.length > 0) console.log(`  ${host.name}: ${left.deadStatus.length} libvirt status file(s) of domains without QEMU removed from ${host.root}: ${left.deadStatus.join(', ')}`);
}

/**
 * A domain a kill left stuck in libvirt (bench/libvirt-root-state.ts) would
 * cost every later restart of the host 60 s and fail a build of its UUID:
 * counted as a finding, then released (the agent stopped meanwhile) so that
 * the next run starts clean.
 */
async function unstick(host: BenchHost, run: Run): Promise<void> {
  const stuck = stuckDomains(host.root);
  if (stuck.length === 0) return;
  run.stuck = stuck;
  await host.stop();
  const rootIndex = ROOTS.indexOf(host.root);
  removeStatus(host.root, stuck);
  for (const name of stuck) await virsh(uris[rootIndex]!, ['undefine', name]).catch((err: unknown) => console.error(`undefine ${name}: ${String(err)}`));
  host.start();
  await host.serving();
}

function send(run: Run, host: BenchHost, kind: RequestKind, uuid: string, body?: unknown): Promise<SentRequest> {
  return ledger!.send(`${run.scenario}`, host.name, kind, uuid, body ?? { uuid }).then((r) => {
    run.requests.push(r);
    return r;
  });
}

async function build(run: Run, host: BenchHost, count: number): Promise<{ uuids: string[]; requests: SentRequest[] }> {
  const uuids = Array.from({ length: count }, () => randomUUID());
  const requests: SentRequest[] = [];
  for (const [i, uuid] of uuids.entries()) requests.push(await send(run, host, 'build', uuid, testGuestBuild(uuid, `dur-${run.scenario}-${i}`, { memoryMb: 128, cmdline: 'console=ttyS0 novalet.name=dur' })));
  return { uuids, requests };
}

/** Until every request is answered (or the timeout: the rest are lost), then until the hosts' outboxes and queues are empty, then 2 s for late repeats. */
async function settle(on: readonly BenchHost[], requests: readonly SentRequest[], timeoutMs = ANSWER_TIMEOUT_MS): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!ledger!.allAnswered(requests) && Date.now() < deadline) {
    const dead = on.find((h) => !h.alive);
    if (dead) throw new Error(`novalet compute of ${dead.name} exited (${dead.agent?.child.exitCode ?? dead.agent?.child.signalCode}): ${dead.agent?.stderr()}`);
    await delay(100);
  }
  const all = ledger!.allAnswered(requests);
  for (const host of on) {
    const until = Date.now() + 60_000;
    while (Date.now() < until && ((await host.outboxPending()) !== 0 || (await ledger!.depth(`novalet.compute.${host.name}`)) !== 0)) await delay(200);
  }
  await delay(2000);
  return all;
}

/** Requests that must be answered before the scenario's disturbance (its set-up); a run whose set-up fails is reported as such. */
async function setUp(on: BenchHost[], requests: SentRequest[]): Promise<void> {
  if (!(await settle(on, requests))) throw new Error(`set-up: ${requests.filter((r) => !ledger!.answered(r)).length} request(s) unanswered in ${ANSWER_TIMEOUT_MS / 1000} s`);
  const failedBuilds = requests.filter((r) => ledger!.answersOf(r).some((a) => a.event !== 'create.end' && r.kind === 'build'));
  if (failedBuilds.length > 0) throw new Error(`set-up: ${failedBuilds.length} build(s) failed: ${JSON.stringify(failedBuilds.map((r) => ledger!.answersOf(r)[0]?.body))}`);
}

/** Waits a random part of the window, then kill -9 and a restart; how many of `requests` were answered before the kill, and when it fell. */
async function killDuring(host: BenchHost, requests: SentRequest[], windowMs: number): Promise<string> {
  const at = Math.round(rng() * windowMs);
  await delay(at);
  const before = requests.filter((r) => ledger!.answered(r)).length;
  const servedIn = await host.killAndRestart(true);
  const reconciled = host.lines('instances reconciled')[0] as { finished?: string[]; rebuild?: string[] } | undefined;
  return `kill at ${at} ms (${before}/${requests.length} answered), serving again in ${(servedIn / 1000).toFixed(1)} s, recovery finished ${reconciled?.finished?.length ?? 0} and rebuilt ${reconciled?.rebuild?.length ?? 0}`;
}

function expect(run: Run, requests: readonly SentRequest[], event: (r: SentRequest) => string): void {
  for (const r of requests) {
    for (const a of ledger!.answersOf(r)) {
      if (a.event !== event(r)) run.unexpected.push(`${r.kind} → ${a.event}${a.body.fault ? ` (${(a.body.fault as { code: string }).code})` : ''}`);
    }
  }
}
const success = (r: SentRequest) => ({ build: 'create.end', delete: 'delete.end', stop: 'power.off', start: 'power.on' })[r.kind];

// ------------------------------------------------------------ scenarios

async function killDuringDeletes(host: BenchHost, run: Run): Promise<void> {
  const built = await build(run, host, INSTANCES);
  await setUp([host], built.requests);
  const deletes: SentRequest[] = [];
  for (const uuid of built.uuids) deletes.push(await send(run, host, 'delete', uuid));
  run.notes = await killDuring(host, deletes, KILL_WINDOW_MS.delete!);
  await settle([host], run.requests);
  expect(run, run.requests, success);
}

async function killDuringBuilds(host: BenchHost, run: Run): Promise<void> {
  const built = await build(run, host, INSTANCES);
  run.notes = await killDuring(host, built.requests, KILL_WINDOW_MS.build!);
  await settle([host], built.requests);
  expect(run, built.requests, success);
  for (const uuid of built.uuids) await send(run, host, 'delete', uuid);
  await settle([host], run.requests);
}

async function killDuringPowerChanges(host: BenchHost, run: Run): Promise<void> {
  const built = await build(run, host, INSTANCES);
  await setUp([host], built.requests);
  // A guest still booting ignores the power button: the stop would wait shutdown_timeout.
  await host.waitBooted(built.uuids);
  const stops: SentRequest[] = [];
  for (const uuid of built.uuids) stops.push(await send(run, host, 'stop', uuid));
  const stopNotes = await killDuring(host, stops, KILL_WINDOW_MS.stop!);
  await settle([host], stops);
  const starts: SentRequest[] = [];
  for (const uuid of built.uuids) starts.push(await send(run, host, 'start', uuid));
  const startNotes = await killDuring(host, starts, KILL_WINDOW_MS.start!);
  await settle([host], starts);
  expect(run, run.requests, success);
  for (const uuid of built.uuids) await send(run, host, 'delete', uuid);
  await settle([host], run.requests);
  run.notes = `stops: ${stopNotes}; starts: ${startNotes}`;
}

/** (d) and (e) in one outage: `left` is left alone, `killed` is killed and started again during it. */
async function brokerOutage(left: BenchHost | null, killed: BenchHost | null, runD: Run | null, runE: Run | null): Promise<void> {
  const pairs = [...(left ? [[left, runD!] as const] : []), ...(killed ? [[killed, runE!] as const] : [])];
  const builds = new Map<BenchHost, Awaited<ReturnType<typeof build>>>();
  for (const [host, run] of pairs) builds.set(host, await build(run, host, OUTAGE_INSTANCES));
  const t0 = performance.now();
  // Builds under way on each host (one create.start at least) before the broker goes.
  for (const [host] of pairs) {
    const uuids = builds.get(host)!.uuids;
    while (!uuids.some((u) => ledger!.eventOf(u, 'create.start', t0 - 60_000))) {
      if (performance.now() - t0 > 120_000) throw new Error(`no create.start from ${host.name} in 120 s`);
      await delay(20);
    }
  }
  await ledger!.pause();
  const builtBy = (h: BenchHost) => h.lines('instance built').filter((l) => builds.get(h)!.uuids.includes(l.uuid as string)).length;
  rabbit!.kill();
  const down = performance.now();
  const builtBefore = new Map(pairs.map(([h]) => [h, builtBy(h)]));
  let killNote = '';
  if (killed) {
    // Killed once a build has finished in the outage (its create.end only on disk), or after 10 s.
    while (builtBy(killed) === builtBefore.get(killed) && performance.now() - down < 10_000) await delay(20);
    const done = builtBy(killed) - builtBefore.get(killed)!;
    const at = performance.now() - down;
    await killed.killAndRestart(false);
    killNote = `killed ${(at / 1000).toFixed(1)} s into it with ${done} of them built; started again at once`;
  }
  await delay(Math.max(0, OUTAGE_MS - (performance.now() - down)));
  const builtInOutage = new Map(pairs.map(([h]) => [h, builtBy(h) - builtBefore.get(h)!]));
  // Started again on the same data; down until it accepts AMQP connections again.
  await rabbit!.restart();
  const outage = ((performance.now() - down) / 1000).toFixed(1);
  await ledger!.resume();
  if (killed) await killed.serving();
  const on = pairs.map(([h]) => h);
  await settle(on, pairs.flatMap(([, r]) => r.requests));
  for (const [host, run] of pairs) {
    expect(run, run.requests, success);
    const base = `broker down ${outage} s; ${builtBefore.get(host)}/${OUTAGE_INSTANCES} built before it went`;
    run.notes = host === killed ? `${base}; ${killNote}` : `${base}, ${builtInOutage.get(host)} in the outage`;
    for (const uuid of builds.get(host)!.uuids) await send(run, host, 'delete', uuid);
  }
  await settle(on, pairs.flatMap(([, r]) => r.requests));
}

/** Fills the small file system to its last byte, whatever its guests' consoles write meanwhile (into the file that `fs.free()` removes). */
function fill(fs: SmallFileSystem): void {
  const fd = openSync(path.join(fs.dir, 'filler'), 'a');
  try {
    for (let chunk = 1 << 20; chunk >= 1; chunk >>= 4) {
      const bytes = Buffer.alloc(chunk);
      try {
        for (;;) writeSync(fd, bytes);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
      }
    }
  } finally {
    closeSync(fd);
  }
}

async function fullDisk(host: BenchHost, fs: SmallFileSystem, run: Run): Promise<void> {
  const built = await build(run, host, 2);
  await setUp([host], built.requests);
  const [a, b] = built.uuids as [string, string];
  fill(fs);
  const c = randomUUID();
  const refused = [await send(run, host, 'stop', a), await send(run, host, 'delete', b)];
  const buildC = await send(run, host, 'build', c, testGuestBuild(c, `dur-f-full`, { memoryMb: 128, cmdline: 'console=ttyS0 novalet.name=dur' }));
  await settle([host], [...refused, buildC]);
  expect(run, [...refused, buildC], (r) => (r.kind === 'build' ? 'create.error' : 'action.error'));
  const codes = [...refused, buildC].flatMap((r) => ledger!.answersOf(r).map((x) => (x.body.fault as { code?: string } | undefined)?.code ?? x.event));
  fs.free();
  for (const uuid of [a, b, c]) await send(run, host, 'delete', uuid);
  await settle([host], run.requests);
  run.notes = `on the full disk: stop, delete, build answered ${codes.join(', ')}`;
}

// ------------------------------------------------------------------ main

function report(run: Run, index: number): void {
  const audit = (run.audit = ledger!.audit(run.requests));
  const line = `${run.scenario}/${index + 1}: ${audit.requests} requests, lost ${audit.lost.length}, repeats same id ${audit.repeatsSameId}, without ${audit.repeatsOtherId.length}${run.unexpected.length ? `, unexpected answers: ${run.unexpected.join('; ')}` : ''} — ${run.notes}`;
  console.log(`- ${line}`);
  if (run.stuck) console.log(`  STUCK IN LIBVIRT: ${run.stuck.join(', ')} (paused, starting up, no QEMU; released)`);
  for (const lost of audit.lost) console.log(`  LOST: ${lost.kind} of ${lost.uuid} (request ${lost.id}); events of the instance: ${ledger!.arrivals.filter((x) => x.uuid === lost.uuid).map((x) => x.event).join(', ')}`);
  for (const other of audit.repeatsOtherId) console.log(`  REPEAT WITHOUT ITS ID: ${other.routingKey} id ${other.id}`);
  for (const c of audit.contradictions) console.log(`  CONTRADICTION: ${c.request.kind} of ${c.request.uuid} answered ${c.events.join(' and ')}`);
}

async function scenario(label: string, body: (i: number) => Promise<Run[]>): Promise<void> {
  const t0 = performance.now();
  console.log(`\n### ${label}  (load ${loadAverage()})\n`);
  for (let i = 0; i < RUNS; i++) {
    const done = await body(i);
    for (const run of done) {
      report(run, i);
      runs.push(run);
    }
  }
  times[label] = (performance.now() - t0) / 1000;
}

const LABELS: Record<string, string> = {
  a: '(a) kill -9 during deletes',
  b: '(b) kill -9 during builds',
  c: '(c) kill -9 during stops, then starts',
  d: '(d) broker down 75 s while builds finish',
  e: '(e) broker down 75 s, agent killed and restarted in it',
  f: '(f) full disk: stop, delete, build',
};

const startedAt = performance.now();
const loads = [`start ${loadAverage()}`];
try {
  rabbit = await startRabbitMq();
  ledger = await EventLedger.open(rabbit.url);
  console.log(`seed ${SEED}; ${RUNS} run(s) of each of ${[...CHOSEN].join(', ')}; ${INSTANCES} instance(s) a run`);
  const single: [string, (h: BenchHost, r: Run) => Promise<void>][] = [
    ['a', killDuringDeletes],
    ['b', killDuringBuilds],
    ['c', killDuringPowerChanges],
  ];
  for (const [key, body] of single) {
    if (!CHOSEN.has(key)) continue;
    const host = await newHost(`dur-${key}`, 0);
    await scenario(LABELS[key]!, async () => {
      const run: Run = { scenario: key, requests: [], unexpected: [], notes: '' };
      await body(host, run);
      await unstick(host, run);
      return [run];
    });
    await retire(host);
  }
  if (CHOSEN.has('d') || CHOSEN.has('e')) {
    const left = CHOSEN.has('d') ? await newHost('dur-d', 0) : null;
    const killed = CHOSEN.has('e') ? await newHost('dur-e', 1) : null;
    const label = [left && LABELS.d, killed && LABELS.e].filter(Boolean).join(' and ');
    await scenario(label, async () => {
      const runD: Run | null = left ? { scenario: 'd', requests: [], unexpected: [], notes: '' } : null;
      const runE: Run | null = killed ? { scenario: 'e', requests: [], unexpected: [], notes: '' } : null;
      await brokerOutage(left, killed, runD, runE);
      if (killed) await unstick(killed, runE!);
      return [runD, runE].filter((r): r is Run => r !== null);
    });
    for (const h of [left, killed]) if (h) await retire(h);
  }
  if (CHOSEN.has('f')) {
    smallFs = mountSmallFileSystem(SMALL_FS_KIB);
    const host = await newHost('dur-f', 0, path.join(smallFs.dir, 'state'));
    await scenario(LABELS.f!, async () => {
      const run: Run = { scenario: 'f', requests: [], unexpected: [], notes: '' };
      await fullDisk(host, smallFs!, run);
      return [run];
    });
    await retire(host);
  }
  loads.push(`end ${loadAverage()}`);

  console.log(`\n| scenario | runs | requests | answered | lost | repeats under the same id | repeats without it | contradictions | answers | unexpected answers | domains stuck in libvirt | time |`);
  console.log('|---|---|---|---|---|---|---|---|---|---|---|---|');
  let lost = 0;
  let other = 0;
  for (const key of ['a', 'b', 'c', 'd', 'e', 'f']) {
    const own = runs.filter((r) => r.scenario === key);
    if (own.length === 0) continue;
    const total = sumAudits(own.map((r) => r.audit!));
    lost += total.lost.length;
    other += total.repeatsOtherId.length + total.contradictions.length;
    const time = Object.entries(times).find(([label]) => label.includes(LABELS[key]!))?.[1] ?? 0;
    const answers = Object.entries(total.outcomes).map(([k, v]) => `${k} ${v}`).join(', ');
    const unexpected = own.reduce((n, r) => n + r.unexpected.length, 0);
    const stuck = own.reduce((n, r) => n + (r.stuck?.length ?? 0), 0);
    console.log(`| ${LABELS[key]} | ${own.length} | ${total.requests} | ${total.requests - total.lost.length} | ${total.lost.length} | ${total.repeatsSameId} | ${total.repeatsOtherId.length} | ${total.contradictions.length} | ${answers} | ${unexpected} | ${stuck} | ${(time / 60).toFixed(1)} min |`);
  }
  console.log(`\nTarget, 0 events lost (and no repeat without its id): ${lost === 0 && other === 0 ? 'met' : `NOT met (${lost} lost, ${other} repeats without their id or contradictions)`}`);
  console.log(`total time ${((performance.now() - startedAt) / 60_000).toFixed(1)} min; load average (1, 5, 15 min): ${loads.join('; ')}`);
} catch (err) {
  failed = true;
  console.error(err);
} finally {
  for (const host of hosts) if (host.alive) await host.stop();
  for (const [i, root] of ROOTS.entries()) {
    const left = await clearRoot(i).catch((err: unknown) => {
      console.error(err);
      return { domains: -1, deadStatus: [] };
    });
    if (left.domains !== 0) console.error(`${left.domains} domain(s) were left in ${root} and removed`);
  }
  await ledger?.close();
  const rabbitDir = rabbit?.dir;
  await rabbit?.stop();
  const smallDir = smallFs?.dir;
  smallFs?.unmount();
  rmSync(work, { recursive: true, force: true });
  const leftovers = [...(await processesMarked([...ROOTS, work, ...(smallDir ? [smallDir] : [])])), ...(rabbitDir ? markedProcesses(rabbitDir).map(String) : [])];
  if (leftovers.length > 0) {
    failed = true;
    console.error(`processes left behind:\n${leftovers.join('\n')}`);
  }
}
process.exitCode = failed ? 1 : 0;
