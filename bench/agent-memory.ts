/**
 * The agent's resident memory under different ways of starting node, side
 * by side in one run: a real `novalet compute` (TCG, virt_type = qemu) with
 * N instances of the test guest (20 unless told), started
 *
 *   - as deploy/novalet-compute.service starts it (its node flags and
 *     Environment=),
 *   - the same without MALLOC_ARENA_MAX,
 *   - the same with --optimize-for-size,
 *   - with node's defaults (no flag, no environment),
 *
 * in turns, the order reversed every other round so that drift on a noisy
 * machine falls on every variant alike. For each: VmRSS serving with no
 * instance (3 s after ready), 5 s after the last of the N builds is ACTIVE,
 * and steady (once the libvirt call threads the builds started have had
 * their idle time, hypervisor/libvirt/call-pool.ts). Target (issue 10):
 * ≤ 120 MB with 20 instances.
 *
 *   npm run build && node dist/bench/agent-memory.js [rounds] [instances]
 */
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { loadavg } from 'node:os';
import path from 'node:path';
import { DEFAULT_LIBVIRT_CALL_THREAD_IDLE_MS } from '../hypervisor/libvirt/call-pool.js';
import { prepareEmbeddedRoot } from '../hypervisor/libvirt/embedded-root.js';
import { runForkSafe } from '../hypervisor/libvirt/fork-safety.js';
import { BusClient } from '../test/support/bus-client.js';
import { testGuestBuild, type ComputeAgent } from '../test/support/compute-agent.js';
import { startRabbitMq, type RabbitMqHandle } from '../test/support/rabbitmq.js';
import {
  buildTestGuest,
  clearAgentRoot,
  delay,
  megabytes,
  noneLeftBehind,
  servingPid,
  startAgentAsUnit,
  stopAgent,
  unitLaunch,
  vmStatus,
  writeAgentConfig,
  type AgentLaunch,
  type Memory,
} from './agent-process.js';

// libvirt cannot fork QEMU from a plainly started node: see hypervisor/libvirt/fork-safety.ts.
const relaunched = await runForkSafe();
if (relaunched !== null) process.exit(relaunched);

const rounds = Math.max(1, Number(process.argv[2] ?? 2));
const instances = Math.max(1, Number(process.argv[3] ?? 20));
/** The agents' libvirt root, one agent at a time: fixed, so that it stays warm across runs. Only this benchmark uses it. */
const ROOT = '/var/tmp/novalet-bench-memory';
const TARGET_MB = 120;

const unit = unitLaunch();
const { MALLOC_ARENA_MAX: _arenas, ...unitEnvWithoutArenas } = unit.env;
const VARIANTS: { name: string; launch: AgentLaunch }[] = [
  { name: "the unit's (deploy/novalet-compute.service)", launch: unit },
  { name: "the unit's without MALLOC_ARENA_MAX", launch: { nodeFlags: unit.nodeFlags, env: unitEnvWithoutArenas } },
  { name: "the unit's with --optimize-for-size", launch: { nodeFlags: [...unit.nodeFlags, '--optimize-for-size'], env: unit.env } },
  { name: "node's defaults (no flag, no environment)", launch: { nodeFlags: [], env: {} } },
];

interface Sample {
  variant: number;
  idle: Memory;
  afterBuilds: Memory;
  steady: Memory;
  peakMb: number;
}

buildTestGuest();
const work = mkdtempSync('/var/tmp/novalet-bam-');
const uri = await prepareEmbeddedRoot(ROOT);
const leftInRoot = await clearAgentRoot(uri, ROOT);
let rabbit: RabbitMqHandle | null = null;
let client: BusClient | null = null;
let agent: ComputeAgent | null = null;
let failed = false;
const samples: Sample[] = [];
const loads: string[] = [`start: ${loadavg().map((l) => l.toFixed(2)).join(' ')}`];

/** Waits until `list` on the host shows every one of `uuids` in `state`; fails on an ERROR or after the timeout. */
async function waitForStates(host: string, uuids: string[], wanted: (state: string | undefined) => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 300_000;
  for (;;) {
    const listed = new Map((await client!.list(host)).map((i) => [i.uuid, i.state]));
    const errored = uuids.filter((u) => listed.get(u) === 'error');
    if (errored.length > 0) throw new Error(`${errored.length} instance(s) went to ERROR while waiting for ${what}`);
    if (uuids.every((u) => wanted(listed.get(u)))) return;
    if (agent && (agent.child.exitCode !== null || agent.child.signalCode !== null)) throw new Error(`novalet compute exited while waiting for ${what}: ${agent.stderr()}`);
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await delay(500);
  }
}

async function measure(variant: number): Promise<Sample> {
  const host = `bam-${randomUUID().slice(0, 8)}`;
  const stateDir = path.join(work, host);
  mkdirSync(stateDir, { mode: 0o700 });
  const configFile = path.join(stateDir, 'novalet.conf');
  await writeAgentConfig(configFile, { host, stateDir, transportUrl: rabbit!.transportUrl, connectionUri: uri });
  // This process has descriptors 3 … 12 on /dev/null (runForkSafe above): passed on, as the unit's bash does.
  agent = startAgentAsUnit(configFile, VARIANTS[variant]!.launch);
  try {
    const pid = await servingPid(agent);
    await delay(3000);
    const idle = vmStatus(pid);
    const uuids = Array.from({ length: instances }, () => randomUUID());
    let peakMb = 0;
    const sampler = setInterval(() => (peakMb = Math.max(peakMb, vmStatus(pid).rssMb)), 250);
    try {
      for (const [i, uuid] of uuids.entries()) await client!.send(host, 'build', testGuestBuild(uuid, `mem-${i}`, { memoryMb: 128, cmdline: 'console=ttyS0 novalet.name=bench' }));
      await waitForStates(host, uuids, (s) => s === 'active', `${instances} instances ACTIVE`);
      await delay(5000);
    } finally {
      clearInterval(sampler);
    }
    const afterBuilds = vmStatus(pid);
    await delay(DEFAULT_LIBVIRT_CALL_THREAD_IDLE_MS + 5000);
    const steady = vmStatus(pid);
    for (const uuid of uuids) await client!.send(host, 'delete', { uuid });
    await waitForStates(host, uuids, (s) => s === undefined || s === 'deleted', `${instances} deletes`);
    return { variant, idle, afterBuilds, steady, peakMb };
  } finally {
    const code = await stopAgent(agent);
    agent = null;
    if (code !== 0) throw new Error(`novalet compute exited ${code} after SIGTERM`);
  }
}

try {
  rabbit = await startRabbitMq();
  client = await BusClient.connect(rabbit.url);
  console.log(`${instances} instances per agent, ${rounds} round(s) of ${VARIANTS.length} variants; ${leftInRoot} domain(s) a killed run left in ${ROOT} removed first\n`);
  for (let round = 0; round < rounds; round++) {
    const order = VARIANTS.map((_, i) => i);
    if (round % 2 === 1) order.reverse();
    for (const variant of order) samples.push(await measure(variant));
  }
  loads.push(`end: ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);

  const mib = (xs: number[]) => (xs.reduce((a, b) => a + b, 0) / xs.length).toFixed(1);
  console.log(`| node started with | runs | VmRSS serving, no instance | ${instances} instances, 5 s after the builds | ${instances} instances, steady | RssAnon steady | highest during the builds |`);
  console.log('|---|---|---|---|---|---|---|');
  for (const [i, variant] of VARIANTS.entries()) {
    const own = samples.filter((s) => s.variant === i);
    console.log(
      `| ${variant.name}: \`${[...Object.entries(variant.launch.env).map(([k, v]) => `${k}=${v}`), 'node', ...variant.launch.nodeFlags].join(' ')}\` | ${own.length} | ${mib(own.map((s) => s.idle.rssMb))} | ${mib(own.map((s) => s.afterBuilds.rssMb))} | ${mib(own.map((s) => s.steady.rssMb))} | ${mib(own.map((s) => s.steady.anonMb))} | ${mib(own.map((s) => s.peakMb))} |`,
    );
  }
  console.log('\nMiB, the mean of the runs; each run:');
  for (const s of samples) console.log(`- ${VARIANTS[s.variant]!.name}: ${s.idle.rssMb.toFixed(1)} / ${s.afterBuilds.rssMb.toFixed(1)} / ${s.steady.rssMb.toFixed(1)} MiB (threads ${s.idle.threads} / ${s.afterBuilds.threads} / ${s.steady.threads})`);
  const unitSteady = samples.filter((s) => s.variant === 0).map((s) => megabytes(s.steady.rssMb));
  const worst = Math.max(...unitSteady);
  const verdict = instances === 20 ? `target ≤ ${TARGET_MB} MB: ${worst <= TARGET_MB ? 'met' : 'NOT met'}` : `the target, ≤ ${TARGET_MB} MB, is for 20 instances`;
  console.log(`\nAs the unit starts it, with ${instances} instances, steady: at most ${worst.toFixed(1)} MB over ${unitSteady.length} run(s) (${verdict})`);
  console.log(`load average (1, 5, 15 min): ${loads.join('; ')}`);
} catch (err) {
  failed = true;
  console.error(err);
} finally {
  if (agent) await stopAgent(agent);
  await client?.close();
  const left = await clearAgentRoot(uri, ROOT).catch((err: unknown) => {
    console.error(err);
    return -1;
  });
  if (left !== 0) {
    failed = true;
    console.error(`${left} domain(s) were left in ${ROOT} and removed`);
  }
  const rabbitDir = rabbit?.dir;
  await rabbit?.stop();
  rmSync(work, { recursive: true, force: true });
  if (!(await noneLeftBehind([ROOT, work], rabbitDir))) failed = true;
}
process.exitCode = failed ? 1 : 0;
