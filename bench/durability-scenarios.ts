/**
 * The scenarios of bench/durability.ts, one run each, on the hosts and the
 * broker it gives them; every request goes through the ledger
 * (bench/event-ledger.ts), so that its answer can be found by id.
 */
import { randomUUID } from 'node:crypto';
import { closeSync, openSync, writeSync } from 'node:fs';
import path from 'node:path';
import { testGuestBuild } from '../test/support/compute-agent.js';
import type { RabbitMqHandle } from '../test/support/rabbitmq.js';
import type { SmallFileSystem } from '../test/support/small-filesystem.js';
import { delay } from './agent-process.js';
import type { BenchHost } from './bench-host.js';
import type { EventLedger, RequestKind, SentRequest } from './event-ledger.js';

/** How long the broker stays down in (d) and (e): longer than rpc_response_timeout's 60 s. */
export const OUTAGE_MS = 75_000;
/** What has not been answered this long after a run's disturbance is lost. */
export const ANSWER_TIMEOUT_MS = 180_000;
/** How much later than the chosen answer a kill may fall. */
const KILL_JITTER_MS = 300;

export interface Run {
  scenario: string;
  requests: SentRequest[];
  audit?: ReturnType<EventLedger['audit']>;
  /** Domains the run's kills left stuck in libvirt (`paused (starting up)`, no QEMU, a start job held for ever). */
  stuck?: string[];
  /** Answers of a kind the scenario did not expect (e.g. a kill scenario's create.error), with their fault codes. */
  unexpected: string[];
  notes: string;
}

export function newRun(scenario: string): Run {
  return { scenario, requests: [], unexpected: [], notes: '' };
}

const success = (r: SentRequest) => ({ build: 'create.end', delete: 'delete.end', stop: 'power.off', start: 'power.on' })[r.kind];

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

export class Scenarios {
  constructor(
    private readonly ledger: EventLedger,
    private readonly rabbit: RabbitMqHandle,
    private readonly rng: () => number,
    /** Instances a run builds (the full disk's runs: 2). */
    private readonly instances: number,
    /** Builds per host in (d) and (e): enough that some still run once the broker is down. */
    private readonly outageInstances: number,
  ) {}

  send(run: Run, host: BenchHost, kind: RequestKind, uuid: string, body?: unknown): Promise<SentRequest> {
    return this.ledger.send(`${run.scenario}`, host.name, kind, uuid, body ?? { uuid }).then((r) => {
      run.requests.push(r);
      return r;
    });
  }

  async build(run: Run, host: BenchHost, count: number): Promise<{ uuids: string[]; requests: SentRequest[] }> {
    const uuids = Array.from({ length: count }, () => randomUUID());
    const requests: SentRequest[] = [];
    for (const [i, uuid] of uuids.entries()) requests.push(await this.send(run, host, 'build', uuid, testGuestBuild(uuid, `dur-${run.scenario}-${i}`, { memoryMb: 128, cmdline: 'console=ttyS0 novalet.name=dur' })));
    return { uuids, requests };
  }

  /** Until every request is answered (or the timeout: the rest are lost), then until the hosts' outboxes and queues are empty, then 2 s for late repeats. */
  async settle(on: readonly BenchHost[], requests: readonly SentRequest[], timeoutMs = ANSWER_TIMEOUT_MS): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!this.ledger.allAnswered(requests) && Date.now() < deadline) {
      const dead = on.find((h) => !h.alive);
      if (dead) throw new Error(`novalet compute of ${dead.name} exited (${dead.agent?.child.exitCode ?? dead.agent?.child.signalCode}): ${dead.agent?.stderr()}`);
      await delay(100);
    }
    const all = this.ledger.allAnswered(requests);
    for (const host of on) {
      const until = Date.now() + 60_000;
      while (Date.now() < until && ((await host.outboxPending()) !== 0 || (await this.ledger.depth(`novalet.compute.${host.name}`)) !== 0)) await delay(200);
    }
    await delay(2000);
    return all;
  }

  /** Requests that must be answered before the scenario's disturbance (its set-up); a run whose set-up fails is reported as such. */
  async setUp(on: BenchHost[], requests: SentRequest[]): Promise<void> {
    if (!(await this.settle(on, requests))) throw new Error(`set-up: ${requests.filter((r) => !this.ledger.answered(r)).length} request(s) unanswered in ${ANSWER_TIMEOUT_MS / 1000} s`);
    const failedBuilds = requests.filter((r) => this.ledger.answersOf(r).some((a) => a.event !== 'create.end' && r.kind === 'build'));
    if (failedBuilds.length > 0) throw new Error(`set-up: ${failedBuilds.length} this.build(s) failed: ${JSON.stringify(failedBuilds.map((r) => this.ledger.answersOf(r)[0]?.body))}`);
  }

  /**
   * kill -9 while `requests` are under way, then a restart (waiting until it
   * serves): once a random number of them (none … all but one) has been
   * answered, and a random 0–300 ms more, so that the kill falls among them
   * however fast the machine is today. Says when it fell and what recovery did.
   */
  async killDuring(host: BenchHost, requests: SentRequest[]): Promise<string> {
    const wanted = Math.floor(this.rng() * requests.length);
    const jitter = Math.round(this.rng() * KILL_JITTER_MS);
    const t0 = performance.now();
    const answered = () => requests.filter((r) => this.ledger.answered(r)).length;
    while (answered() < wanted && performance.now() - t0 < ANSWER_TIMEOUT_MS) await delay(5);
    await delay(jitter);
    const at = performance.now() - t0;
    const before = answered();
    const servedIn = await host.killAndRestart(true);
    const reconciled = host.lines('instances reconciled')[0] as { finished?: string[]; rebuild?: string[] } | undefined;
    return `kill ${at.toFixed(0)} ms after the requests (${wanted} answers + ${jitter} ms; ${before}/${requests.length} answered then), serving again in ${(servedIn / 1000).toFixed(1)} s, recovery finished ${reconciled?.finished?.length ?? 0} and rebuilt ${reconciled?.rebuild?.length ?? 0}`;
  }

  expect(run: Run, requests: readonly SentRequest[], event: (r: SentRequest) => string): void {
    for (const r of requests) {
      for (const a of this.ledger.answersOf(r)) {
        if (a.event !== event(r)) run.unexpected.push(`${r.kind} → ${a.event}${a.body.fault ? ` (${(a.body.fault as { code: string }).code})` : ''}`);
      }
    }
  }

  async killDuringDeletes(host: BenchHost, run: Run): Promise<void> {
    const built = await this.build(run, host, this.instances);
    await this.setUp([host], built.requests);
    const deletes: SentRequest[] = [];
    for (const uuid of built.uuids) deletes.push(await this.send(run, host, 'delete', uuid));
    run.notes = await this.killDuring(host, deletes);
    await this.settle([host], run.requests);
    this.expect(run, run.requests, success);
  }

  async killDuringBuilds(host: BenchHost, run: Run): Promise<void> {
    const built = await this.build(run, host, this.instances);
    run.notes = await this.killDuring(host, built.requests);
    await this.settle([host], built.requests);
    this.expect(run, built.requests, success);
    for (const uuid of built.uuids) await this.send(run, host, 'delete', uuid);
    await this.settle([host], run.requests);
  }

  async killDuringPowerChanges(host: BenchHost, run: Run): Promise<void> {
    const built = await this.build(run, host, this.instances);
    await this.setUp([host], built.requests);
    // A guest still booting ignores the power button: the stop would wait shutdown_timeout.
    await host.waitBooted(built.uuids);
    const stops: SentRequest[] = [];
    for (const uuid of built.uuids) stops.push(await this.send(run, host, 'stop', uuid));
    const stopNotes = await this.killDuring(host, stops);
    await this.settle([host], stops);
    const starts: SentRequest[] = [];
    for (const uuid of built.uuids) starts.push(await this.send(run, host, 'start', uuid));
    const startNotes = await this.killDuring(host, starts);
    await this.settle([host], starts);
    this.expect(run, run.requests, success);
    for (const uuid of built.uuids) await this.send(run, host, 'delete', uuid);
    await this.settle([host], run.requests);
    run.notes = `stops: ${stopNotes}; starts: ${startNotes}`;
  }

  /** (d) and (e) in one outage: `left` is left alone, `killed` is killed and started again during it. */
  async brokerOutage(left: BenchHost | null, killed: BenchHost | null, runD: Run | null, runE: Run | null): Promise<void> {
    const pairs = [...(left ? [[left, runD!] as const] : []), ...(killed ? [[killed, runE!] as const] : [])];
    const builds = new Map<BenchHost, Awaited<ReturnType<Scenarios['build']>>>();
    for (const [host, run] of pairs) builds.set(host, await this.build(run, host, this.outageInstances));
    const t0 = performance.now();
    // Builds under way on each host (one create.start at least) before the broker goes.
    for (const [host] of pairs) {
      const uuids = builds.get(host)!.uuids;
      while (!uuids.some((u) => this.ledger.eventOf(u, 'create.start', t0 - 60_000))) {
        if (performance.now() - t0 > 120_000) throw new Error(`no create.start from ${host.name} in 120 s`);
        await delay(20);
      }
    }
    await this.ledger.pause();
    const builtBy = (h: BenchHost) => h.lines('instance built').filter((l) => builds.get(h)!.uuids.includes(l.uuid as string)).length;
    this.rabbit.kill();
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
    await this.rabbit.restart();
    const outage = ((performance.now() - down) / 1000).toFixed(1);
    await this.ledger.resume();
    if (killed) await killed.serving();
    const on = pairs.map(([h]) => h);
    await this.settle(on, pairs.flatMap(([, r]) => r.requests));
    for (const [host, run] of pairs) {
      this.expect(run, run.requests, success);
      const base = `broker down ${outage} s; ${builtBefore.get(host)}/${this.outageInstances} built before it went`;
      run.notes = host === killed ? `${base}; ${killNote}` : `${base}, ${builtInOutage.get(host)} in the outage`;
      for (const uuid of builds.get(host)!.uuids) await this.send(run, host, 'delete', uuid);
    }
    await this.settle(on, pairs.flatMap(([, r]) => r.requests));
  }

  async fullDisk(host: BenchHost, fs: SmallFileSystem, run: Run): Promise<void> {
    const built = await this.build(run, host, 2);
    await this.setUp([host], built.requests);
    const [a, b] = built.uuids as [string, string];
    fill(fs);
    const c = randomUUID();
    const refused = [await this.send(run, host, 'stop', a), await this.send(run, host, 'delete', b)];
    const buildC = await this.send(run, host, 'build', c, testGuestBuild(c, `dur-f-full`, { memoryMb: 128, cmdline: 'console=ttyS0 novalet.name=dur' }));
    await this.settle([host], [...refused, buildC]);
    this.expect(run, [...refused, buildC], (r) => (r.kind === 'build' ? 'create.error' : 'action.error'));
    const codes = [...refused, buildC].flatMap((r) => this.ledger.answersOf(r).map((x) => (x.body.fault as { code?: string } | undefined)?.code ?? x.event));
    fs.free();
    for (const uuid of [a, b, c]) await this.send(run, host, 'delete', uuid);
    await this.settle([host], run.requests);
    run.notes = `on the full disk: stop, delete, build answered ${codes.join(', ')}`;
  }
}
