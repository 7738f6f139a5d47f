/**
 * The compute service's benchmarks (issue 10), in one run, against a real
 * `novalet compute` process (TCG, virt_type = qemu) on an embedded libvirt
 * root of its own that outlives the run (libvirt's QEMU probe is paid once
 * per machine), a private RabbitMQ (test/support/rabbitmq.ts) and the test
 * guest booted by name from [compute] image_dir (kernel + initramfs):
 *
 * 1. build received → domain running, warm (the agent's own
 *    `received_to_running_ms` of its 'instance built' line: from the
 *    delivery's receipt to libvirt's create returned and the ACTIVE record
 *    written), interleaved with libvirt's own define + create of the same
 *    domain XML (the XML libvirt saved for a build of the agent, renamed) on
 *    a warm root of the bench pool, in this process. Also publish →
 *    create.end as the client sees it. Target: at most 100 ms above libvirt.
 * 2. 20 builds published at once: all 20 ACTIVE (the `list` call), the
 *    throughput and the slowest build (publish → create.end).
 * 3. the agent's resident memory with those 20 instances, 5 s after the last
 *    build and steady (once the libvirt call threads the burst started have
 *    had their idle time and stopped). Target ≤ 120 MB.
 * 4. the byte size of a heartbeat and of a full report with 20 instances as
 *    received on novalet.events. Targets: ≤ 1 KB and ≤ 8 KB.
 *
 * Deletes are not timed: 1.2–1.8 s here, libvirt noticing that QEMU exited
 * (bench/RESULTS.md). The agent is started as deploy/novalet-compute.service
 * starts it, with descriptors 3 to 12 on /dev/null, so that it does not
 * relaunch itself and its PID is the process that serves (checked against
 * the pid of its log lines).
 *
 *   npm run build && node dist/bench/compute-service.js [rounds]
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import amqp from 'amqplib';
import type { LibvirtDomain } from '../hypervisor/libvirt/domain.js';
import { prepareEmbeddedRoot } from '../hypervisor/libvirt/embedded-root.js';
import { openEmbeddedRootFromPool } from '../hypervisor/libvirt/embedded-root-pool.js';
import { DEFAULT_LIBVIRT_CALL_THREAD_IDLE_MS } from '../hypervisor/libvirt/call-pool.js';
import { runForkSafe } from '../hypervisor/libvirt/fork-safety.js';
import { TEST_GUEST_DIR } from '../test/guest/test-guest.js';
import { BusClient } from '../test/support/bus-client.js';
import { testGuestBuild, type ComputeAgent } from '../test/support/compute-agent.js';
import { buildTestGuest, clearAgentRoot, delay, megabytes, noneLeftBehind, servingPid as servingPidOf, startAgentAsUnit, stopAgent, unitLaunch, vmStatus, waitFor, writeAgentConfig, type Memory } from './agent-process.js';
import { startRabbitMq, type RabbitMqHandle } from '../test/support/rabbitmq.js';

// libvirt cannot fork QEMU from a plainly started node: see hypervisor/libvirt/fork-safety.ts.
const relaunched = await runForkSafe();
if (relaunched !== null) process.exit(relaunched);

const rounds = Math.max(7, Number(process.argv[2] ?? 9));
const AT_ONCE = 20;
/** The agent's libvirt root: fixed, so that it stays warm across runs. Only this benchmark uses it. */
const ROOT = '/var/tmp/novalet-bench-compute';
/** The baseline's domains in the pool root are named so, and removed at the start if a killed run left them. */
const OWN_PREFIX = 'csb-';
const CMDLINE = 'console=ttyS0 novalet.name=bench';
const MEMORY_MB = 128;
const host = `bench-${randomUUID().slice(0, 8)}`;
const execFileAsync = promisify(execFile);
/** Node's flags and environment as deploy/novalet-compute.service gives them (memory: bench/RESULTS.md). */
const launch = unitLaunch();
const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);
const median = (xs: number[]) => {
  const s = sorted(xs);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};
const pct = (xs: number[], p: number) => sorted(xs)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))] ?? NaN;
const load = () => loadavg().map((l) => l.toFixed(2)).join(' ');

/** What arrives on novalet.events, with its size on the wire and when it came (this process's clock). */
interface Arrival {
  routingKey: string;
  bytes: number;
  at: number;
  body: Record<string, unknown>;
}

/** A queue of the benchmark's own on novalet.events: BusClient parses what it takes and keeps no size or time. */
async function tapEvents(url: string): Promise<{ arrivals: Arrival[]; close: () => Promise<void> }> {
  const model = await amqp.connect(url);
  const channel = await model.createChannel();
  await channel.assertExchange('novalet.events', 'topic', { durable: true });
  const q = await channel.assertQueue('', { exclusive: true, autoDelete: true });
  await channel.bindQueue(q.queue, 'novalet.events', '#');
  const arrivals: Arrival[] = [];
  await channel.consume(
    q.queue,
    (m) => {
      if (!m) return;
      const envelope = JSON.parse(m.content.toString('utf8')) as { body: Record<string, unknown> };
      arrivals.push({ routingKey: m.fields.routingKey, bytes: m.content.length, at: performance.now(), body: envelope.body });
    },
    { noAck: true },
  );
  return { arrivals, close: () => model.close().catch(() => undefined) };
}

function kernelBuild(uuid: string, name: string) {
  return testGuestBuild(uuid, name, { memoryMb: MEMORY_MB, cmdline: CMDLINE });
}

/** CPU seconds (user + system) a process has used, from /proc/<pid>/stat. */
function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // utime and stime are fields 14 and 15 of stat(5), 12 and 13 after the command.
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return 0;
  }
}

/** The pids of the QEMUs of the agent's instances (their command lines name the domain). */
async function agentQemus(): Promise<number[]> {
  try {
    const { stdout } = await execFileAsync('pgrep', ['-f', 'guest=novalet-'], { encoding: 'utf8' });
    return stdout.split('\n').filter(Boolean).map(Number).filter((pid) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(ROOT));
  } catch {
    return [];
  }
}

// ---------------------------------------------------------------- set-up

buildTestGuest();
// On disk, as /var/lib/novalet is: the records are written with fsync.
const work = mkdtempSync('/var/tmp/novalet-bcs-');
// Before libvirt starts here or in virsh: its warnings (each domain "tainted: high-privileges") would cut into the tables.
// A file output is safe in the relaunched process (fork-safety.ts); the agent is started without it and routes its own.
process.env.LIBVIRT_LOG_OUTPUTS ??= `3:file:${path.join(work, 'libvirt.log')}`;
const stateDir = path.join(work, 'state');
mkdirSync(stateDir, { mode: 0o700 });
const baselineDir = path.join(work, 'baseline');
mkdirSync(baselineDir);
const { agentUri, leftInRoot, connection, poolRoot } = await (async () => {
  try {
    const uri = await prepareEmbeddedRoot(ROOT);
    // A killed run's domains would show in the agent's reports as unrecorded ones and weigh on everything.
    const left = await clearAgentRoot(uri, ROOT);
    const pool = await openEmbeddedRootFromPool('/var/tmp/novalet-bench-libvirt');
    return { agentUri: uri, leftInRoot: left, connection: pool.connection, poolRoot: pool.root };
  } catch (err) {
    rmSync(work, { recursive: true, force: true });
    throw err;
  }
})();

let rabbit: RabbitMqHandle | null = null;
let agent: ComputeAgent | null = null;
let tap: Awaited<ReturnType<typeof tapEvents>> | null = null;
let client: BusClient | null = null;

async function removeOwnBaselineDomains(): Promise<void> {
  for (const d of await connection.listAllDomains()) {
    if (d.name.startsWith(OWN_PREFIX)) {
      await d.remove();
      rmSync(path.join(poolRoot, 'log', 'qemu', `${d.name}.log`), { force: true });
    }
    await d.free();
  }
}

/** The build's create.end (or create.error) as it arrived. */
function endOf(uuid: string): Arrival | undefined {
  return tap!.arrivals.find((a) => a.routingKey === `instance.${uuid}.create.end` || a.routingKey === `instance.${uuid}.create.error`);
}

function builtLine(uuid: string): Record<string, unknown> | undefined {
  return agent!.lines.find((l) => l.msg === 'instance built' && l.uuid === uuid);
}

/** One build through the bus: publish → create.end (client side) and the agent's received → running. */
async function novaletBuild(name: string): Promise<{ uuid: string; publishToEndMs: number; receivedToRunningMs: number }> {
  const uuid = randomUUID();
  const sent = performance.now();
  await client!.send(host, 'build', kernelBuild(uuid, name));
  const end = await waitFor(`the create.end of ${uuid}`, () => endOf(uuid), 120_000, agent!);
  if (!end.routingKey.endsWith('create.end')) throw new Error(`build ${uuid} failed: ${JSON.stringify(end.body)}`);
  const line = await waitFor(`the 'instance built' line of ${uuid}`, () => builtLine(uuid), 10_000, agent!);
  return { uuid, publishToEndMs: end.at - sent, receivedToRunningMs: Number(line.received_to_running_ms) };
}

async function novaletDelete(uuid: string): Promise<void> {
  await client!.send(host, 'delete', { uuid });
  await waitFor(`the delete.end of ${uuid}`, () => tap!.arrivals.find((a) => a.routingKey === `instance.${uuid}.delete.end`), 120_000, agent!);
}

/** The domain XML libvirt saved for one of the agent's instances, as a template: its UUID, name and instance folder to be replaced. */
interface Template {
  xml: string;
  uuid: string;
  instanceDir: string;
}

/** libvirt's define + create of the agent's domain, renamed, on the pool root, until running; removed afterwards (not timed). */
async function libvirtCreate(template: Template): Promise<number> {
  const uuid = randomUUID();
  const dir = path.join(baselineDir, uuid);
  mkdirSync(dir);
  // The agent's own copies of the kernel and ramdisk (libvirt-driver.ts copies them per instance): made here untimed.
  copyFileSync(path.join(TEST_GUEST_DIR, 'vmlinuz'), path.join(dir, 'kernel'));
  copyFileSync(path.join(TEST_GUEST_DIR, 'initramfs.cpio.gz'), path.join(dir, 'ramdisk'));
  const xml = template.xml
    .split(template.instanceDir)
    .join(dir)
    .split(template.uuid)
    .join(uuid)
    .replace(/<name>novalet-/, `<name>${OWN_PREFIX}`);
  let domain: LibvirtDomain | null = null;
  try {
    const start = performance.now();
    domain = await connection.defineDomain(xml);
    await domain.create();
    return performance.now() - start;
  } finally {
    if (domain) {
      await domain.remove();
      await domain.free();
      rmSync(path.join(poolRoot, 'log', 'qemu', `${domain.name}.log`), { force: true });
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

const loads: string[] = [`start: ${load()}`];
let failed = false;
try {
  await removeOwnBaselineDomains();
  rabbit = await startRabbitMq();
  const configFile = path.join(work, 'novalet.conf');
  await writeAgentConfig(configFile, { host, stateDir, transportUrl: rabbit.transportUrl, connectionUri: agentUri });
  tap = await tapEvents(rabbit.url);
  client = await BusClient.connect(rabbit.url);
  // This process has descriptors 3 … 12 on /dev/null (runForkSafe above): passed on, as the unit's bash does.
  agent = startAgentAsUnit(configFile, launch);
  const servingPid = await servingPidOf(agent);
  console.log(`host ${host}; agent pid ${servingPid} (started with descriptors 3–12 on /dev/null, serving itself); ${leftInRoot} domain(s) a killed run left in ${ROOT} removed first`);
  console.log(`baseline: define + create on ${poolRoot}; ${rounds} rounds interleaved after a warm-up of each\n`);
  await delay(3000);
  const idle = vmStatus(servingPid);

  // ------------------------------------------ 1. received → running vs libvirt
  const warm = await novaletBuild('warm-up');
  const name = `novalet-${warm.uuid}`;
  const template: Template = { xml: readFileSync(path.join(ROOT, 'etc', 'qemu', `${name}.xml`), 'utf8'), uuid: warm.uuid, instanceDir: path.join(stateDir, 'instances', warm.uuid) };
  if (!template.xml.includes(template.instanceDir)) throw new Error(`the saved XML of ${name} does not name the instance folder ${template.instanceDir}`);
  await novaletDelete(warm.uuid);
  await libvirtCreate(template);
  const viaAgent: number[] = [];
  const clientSide: number[] = [];
  const viaLibvirt: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const measureNovalet = async () => {
      const built = await novaletBuild(`round-${r}`);
      viaAgent.push(built.receivedToRunningMs);
      clientSide.push(built.publishToEndMs);
      await novaletDelete(built.uuid);
    };
    const measureLibvirt = async () => void viaLibvirt.push(await libvirtCreate(template));
    if (r % 2 === 0) {
      await measureNovalet();
      await measureLibvirt();
    } else {
      await measureLibvirt();
      await measureNovalet();
    }
  }
  loads.push(`after part 1: ${load()}`);
  await delay(3000);
  const afterPart1 = vmStatus(servingPid);

  // ------------------------------------------------- 2. 20 builds at once
  const uuids: string[] = Array.from({ length: AT_ONCE }, () => randomUUID());
  const rssDuring: number[] = [];
  const sampler = setInterval(() => rssDuring.push(vmStatus(servingPid).rssMb), 250);
  const agentCpu0 = cpuSeconds(servingPid);
  const t0 = performance.now();
  await Promise.all(uuids.map((uuid, i) => client!.send(host, 'build', kernelBuild(uuid, `many-${i}`))));
  const published = performance.now() - t0;
  const ends = await waitFor(`${AT_ONCE} builds to end`, () => {
    const found = uuids.map(endOf);
    return found.every(Boolean) ? (found as Arrival[]) : undefined;
  }, 900_000, agent);
  clearInterval(sampler);
  const agentCpu = cpuSeconds(servingPid) - agentCpu0;
  // Each of them started during part 2: all of its CPU time is part 2's.
  const qemus = await agentQemus();
  const qemuCpu = qemus.reduce((sum, pid) => sum + cpuSeconds(pid), 0);
  const wallSeconds = (performance.now() - t0) / 1000;
  const errors = ends.filter((e) => e.routingKey.endsWith('create.error'));
  const lastEnd = Math.max(...ends.map((e) => e.at)) - t0;
  const slowest = lastEnd;
  const perBuild = ends.map((e) => e.at - t0);
  const receivedToRunning = uuids.map((u) => Number(builtLine(u)?.received_to_running_ms ?? NaN)).filter((n) => !Number.isNaN(n));
  const listed = await client.list(host);
  const active = listed.filter((i) => i.state === 'active' && uuids.includes(i.uuid));
  await delay(1000);
  const queueDepth = await client.depth(`novalet.compute.${host}`);
  loads.push(`after part 2: ${load()}`);

  // ------------------------------------------- 3. resident memory, settled
  await delay(5000);
  const settled = vmStatus(servingPid);
  // The call threads a burst started beyond the first stop after their idle time (call-pool.ts).
  await delay(DEFAULT_LIBVIRT_CALL_THREAD_IDLE_MS + 5000);
  const steady = vmStatus(servingPid);

  // ------------------------------------------------------- 4. report sizes
  const since = performance.now();
  const heartbeat = await waitFor('a heartbeat with 20 instances running', () => tap!.arrivals.find((a) => a.at > since && a.routingKey === `host.${host}.report` && a.body.report === 'heartbeat'), 30_000, agent);
  const fulls = tap.arrivals.filter(
    (a) => a.routingKey === `host.${host}.report` && a.body.report === 'full' && Array.isArray(a.body.instances) && (a.body.instances as { state: string }[]).filter((i) => i.state === 'active').length === AT_ONCE,
  );
  const full = fulls.length > 0 ? fulls[fulls.length - 1]! : await waitFor('a full report with 20 active instances', () => tap!.arrivals.find((a) => a.at > since && a.routingKey === `host.${host}.report` && a.body.report === 'full'), 60_000, agent);
  const fullInstances = (full.body.instances as unknown[]).length;
  writeFileSync(path.join(work, 'full-report.json'), JSON.stringify(full.body));

  // ----------------------------------------------------------------- table
  const d = median(viaAgent) - median(viaLibvirt);
  const row = (what: string, xs: number[]) => `| ${what} | ${xs.length} | ${median(xs).toFixed(0)} | ${pct(xs, 90).toFixed(0)} | ${Math.min(...xs).toFixed(0)} | ${Math.max(...xs).toFixed(0)} |`;
  console.log('| measurement | runs | median ms | p90 ms | min ms | max ms |');
  console.log('|---|---|---|---|---|---|');
  console.log(row('novalet: build received → running (agent\'s received_to_running_ms)', viaAgent));
  console.log(row('libvirt: define + create of the same domain XML, warm root', viaLibvirt));
  console.log(row('novalet: build published → create.end received (client\'s clock)', clientSide));
  const signed = (ms: number) => `${ms >= 0 ? '+' : '−'}${Math.abs(ms).toFixed(0)}`;
  console.log(`\nreceived → running minus libvirt's create: ${signed(d)} ms at the median, ${signed(pct(viaAgent, 90) - pct(viaLibvirt, 90))} ms at p90 (target ≤ +100 ms: ${d <= 100 ? 'met' : 'NOT met'})`);
  console.log(`\n| ${AT_ONCE} builds at once | value |`);
  console.log('|---|---|');
  console.log(`| published (all ${AT_ONCE}, confirmed) | ${published.toFixed(0)} ms |`);
  console.log(`| create.end / create.error | ${ends.length - errors.length} / ${errors.length} |`);
  console.log(`| ACTIVE in the list call (of ${listed.length} listed) | ${active.length} |`);
  console.log(`| left in the queue | ${queueDepth} |`);
  console.log(`| first → last create.end | ${Math.min(...perBuild).toFixed(0)} → ${lastEnd.toFixed(0)} ms after the publish |`);
  console.log(`| throughput | ${(AT_ONCE / (lastEnd / 1000)).toFixed(2)} builds/s |`);
  console.log(`| slowest build, publish → create.end | ${slowest.toFixed(0)} ms |`);
  console.log(`| received → running (agent), median / max | ${median(receivedToRunning).toFixed(0)} / ${Math.max(...receivedToRunning).toFixed(0)} ms |`);
  console.log(`| CPU used meanwhile (${wallSeconds.toFixed(1)} s × 2 cores = ${(wallSeconds * 2).toFixed(1)} CPU-s): the agent / the ${qemus.length} QEMUs | ${agentCpu.toFixed(1)} / ${qemuCpu.toFixed(1)} CPU-s |`);
  const mem = (what: string, m: Memory) => `| ${what} | ${m.rssMb.toFixed(1)} | ${m.anonMb.toFixed(1)} | ${m.fileMb.toFixed(1)} | ${m.threads} |`;
  console.log(`\n| agent memory | VmRSS MiB | RssAnon MiB | RssFile MiB | threads |`);
  console.log('|---|---|---|---|---|');
  console.log(mem('serving, no instance yet (3 s after ready)', idle));
  console.log(mem(`after part 1 (${rounds + 1} builds and deletes), no instance`, afterPart1));
  console.log(mem(`${AT_ONCE} instances, 5 s after the last build`, settled));
  const idleS = DEFAULT_LIBVIRT_CALL_THREAD_IDLE_MS / 1000;
  console.log(mem(`${AT_ONCE} instances, steady (${idleS + 10} s after the last build: the call threads' idle time of ${idleS} s passed)`, steady));
  const mb = (m: Memory) => megabytes(m.rssMb);
  console.log(`\nVmRSS with ${AT_ONCE} instances, steady: ${mb(steady).toFixed(1)} MB (target ≤ 120 MB: ${mb(steady) <= 120 ? 'met' : 'NOT met'}); 5 s after the last build ${mb(settled).toFixed(1)} MB; highest sample during the builds ${Math.max(...rssDuring).toFixed(1)} MiB, VmHWM ${steady.hwmMb.toFixed(1)} MiB`);
  console.log(`\n| report on novalet.events | bytes | target |`);
  console.log('|---|---|---|');
  console.log(`| heartbeat | ${heartbeat.bytes} | ≤ 1024: ${heartbeat.bytes <= 1024 ? 'met' : 'NOT met'} |`);
  console.log(`| full, ${fullInstances} instances | ${full.bytes} | ≤ 8192: ${full.bytes <= 8192 ? 'met' : 'NOT met'} |`);
  const { instances: _i, cpu_info: cpuInfo, traits, kvm, ...rest } = full.body;
  const part = (v: unknown) => Buffer.byteLength(JSON.stringify(v));
  console.log(`of the full report: instances ${part(_i)} B, cpu_info ${part(cpuInfo)} B, traits ${part(traits)} B, kvm ${part(kvm)} B, the rest ${part(rest)} B`);

  // -------------------------------------------------------------- clean-up
  for (const uuid of uuids) await client.send(host, 'delete', { uuid });
  await waitFor(`${AT_ONCE} deletes`, () => uuids.every((u) => tap!.arrivals.some((a) => a.routingKey === `instance.${u}.delete.end`)), 300_000, agent);
  loads.push(`end: ${load()}`);
  console.log(`\nload average (1, 5, 15 min): ${loads.join('; ')}`);
} catch (err) {
  failed = true;
  console.error(err);
} finally {
  if (agent) {
    const code = await stopAgent(agent);
    if (code === 'killed') console.error('novalet compute did not stop in 60 s after SIGTERM: killed');
    else if (code !== 0) {
      failed = true;
      console.error(`novalet compute exited ${code} after SIGTERM: ${agent.stderr()}`);
    }
  }
  await client?.close();
  await tap?.close();
  const left = await clearAgentRoot(agentUri, ROOT).catch((err: unknown) => {
    console.error(err);
    return -1;
  });
  if (left !== 0) console.error(`${left} domain(s) were left in ${ROOT} and removed`);
  await removeOwnBaselineDomains().catch((err: unknown) => console.error(err));
  await connection.close();
  const rabbitDir = rabbit?.dir;
  await rabbit?.stop();
  rmSync(work, { recursive: true, force: true });
  if (!(await noneLeftBehind([ROOT, work, host, `guest=${OWN_PREFIX}`], rabbitDir))) failed = true;
}
process.exitCode = failed ? 1 : 0;
