/**
 * A real `novalet compute` process as the benchmarks run it: started as
 * deploy/novalet-compute.service starts it (the unit's node flags and
 * environment, descriptors 3 to 12 on /dev/null so that it does not relaunch
 * itself), waited on, and measured from /proc. The caller must itself hold
 * descriptors 3 to 12 on /dev/null (runForkSafe) to pass them on.
 */
import { execFile, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { RESERVED_FD_RANGE } from '../hypervisor/libvirt/fork-safety.js';
import { TEST_GUEST_DIR } from '../test/guest/test-guest.js';
import { freePort, startComputeAgent, type ComputeAgent } from '../test/support/compute-agent.js';
import { markedProcesses } from '../test/support/rabbitmq.js';

/** The built command (test/support/run-novalet.ts names it too, but registers a vitest hook). */
export const NOVALET = path.resolve(import.meta.dirname, '../cli/main.js');
/** The repository (bench/ runs from dist/bench). */
const TOP = path.resolve(import.meta.dirname, '../..');
const execFileAsync = promisify(execFile);

export const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** How the unit starts node: its flags before main.js, and its Environment= assignments. */
export interface AgentLaunch {
  nodeFlags: string[];
  env: Record<string, string>;
}

export function unitLaunch(): AgentLaunch {
  const unit = readFileSync(path.join(TOP, 'deploy/novalet-compute.service'), 'utf8');
  const exec = /^ExecStart=.*exec \/usr\/bin\/node ((?:--\S+ )*)\S+main\.js/m.exec(unit);
  if (!exec) throw new Error('deploy/novalet-compute.service has no ExecStart running /usr/bin/node on main.js');
  const env: Record<string, string> = {};
  for (const [, assignments] of unit.matchAll(/^Environment=(.*)$/gm)) {
    for (const assignment of assignments!.trim().split(/\s+/)) {
      const eq = assignment.indexOf('=');
      if (eq <= 0) throw new Error(`deploy/novalet-compute.service: Environment= takes NAME=value, not ${assignment}`);
      env[assignment.slice(0, eq)] = assignment.slice(eq + 1);
    }
  }
  return { nodeFlags: exec[1]!.trim().split(' ').filter(Boolean), env };
}

/** The test guest in TEST_GUEST_DIR, built if missing (idempotent; test-guest.ts finds its builder only from the sources, not from dist/). */
export function buildTestGuest(): void {
  const built = spawnSync('bash', [path.join(TOP, 'deploy/build-test-guest.sh'), TEST_GUEST_DIR], { encoding: 'utf8', timeout: 300_000 });
  if (built.status !== 0) throw new Error(`the test guest could not be built: ${built.stderr}`);
}

/** Options of a benchmark agent's configuration beyond writeAgentConfig's own: section → option → value (a value of null removes the option). */
export type AgentOptions = Record<string, Record<string, string | number | null>>;

/**
 * A benchmark agent's configuration: TCG on its own libvirt root, the test
 * guest's folder as image_dir, reports every 2 s; `options` override or add
 * to these. Returns the HTTP API's port (its /metrics needs no token).
 */
export async function writeAgentConfig(
  file: string,
  agent: { host: string; stateDir: string; transportUrl: string; connectionUri: string },
  options: AgentOptions = {},
): Promise<{ apiPort: number }> {
  const apiPort = await freePort();
  const sections: AgentOptions = {
    DEFAULT: {
      host: agent.host,
      state_path: agent.stateDir,
      transport_url: agent.transportUrl,
      report_interval: 2,
      graceful_shutdown_timeout: 30,
      // 20 one-vCPU instances on 2 cores: nova's initial ratio (4.0) would refuse all but 8.
      cpu_allocation_ratio: '16.0',
    },
    libvirt: { virt_type: 'qemu', connection_uri: agent.connectionUri },
    compute: { image_dir: TEST_GUEST_DIR },
    api: { port: apiPort },
  };
  for (const [section, values] of Object.entries(options)) sections[section] = { ...sections[section], ...values };
  const lines: string[] = [];
  for (const [section, values] of Object.entries(sections)) {
    lines.push(`[${section}]`);
    for (const [name, value] of Object.entries(values)) if (value !== null) lines.push(`${name} = ${value}`);
  }
  writeFileSync(file, `${lines.join('\n')}\n`);
  return { apiPort };
}

export function startAgentAsUnit(configFile: string, launch: AgentLaunch = unitLaunch()): ComputeAgent {
  const reserved = Array.from({ length: RESERVED_FD_RANGE[1] - RESERVED_FD_RANGE[0] + 1 }, (_, i) => RESERVED_FD_RANGE[0] + i);
  return startComputeAgent(configFile, { program: NOVALET, nodeFlags: launch.nodeFlags, env: launch.env, extraFds: reserved });
}

/** Polls `check` until it finds something; fails early if the agent exits meanwhile. */
export async function waitFor<T>(what: string, check: () => T | undefined | false, timeoutMs: number, agent?: ComputeAgent): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = check();
    if (found !== undefined && found !== false) return found;
    if (agent && (agent.child.exitCode !== null || agent.child.signalCode !== null)) {
      throw new Error(`novalet compute exited (${agent.child.exitCode ?? agent.child.signalCode}) while waiting for ${what}: ${agent.stderr()} ${JSON.stringify(agent.lines.slice(-5))}`);
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await delay(20);
  }
}

/** The pid that serves, from its 'serving' line; it must be the process started (no relaunch). */
export async function servingPid(agent: ComputeAgent): Promise<number> {
  const serving = await waitFor('novalet compute to serve', () => agent.lines.find((l) => l.msg === 'novalet compute is serving'), 300_000, agent);
  const pid = Number(serving.pid);
  if (pid !== agent.child.pid) throw new Error(`novalet compute serves from pid ${pid}, not the ${agent.child.pid} started: it relaunched itself`);
  return pid;
}

/** SIGTERM, then SIGKILL of its process group after 60 s; the exit code (or 'killed'). */
export async function stopAgent(agent: ComputeAgent): Promise<number | null | 'killed'> {
  if (agent.child.exitCode !== null || agent.child.signalCode !== null) return agent.child.exitCode;
  agent.child.kill('SIGTERM');
  const code = await Promise.race([agent.exited, delay(60_000).then(() => 'timeout' as const)]);
  if (code !== 'timeout') return code;
  try {
    process.kill(-agent.child.pid!, 'SIGKILL');
  } catch {
    // Gone.
  }
  await agent.exited;
  return 'killed';
}

export interface Memory {
  rssMb: number;
  hwmMb: number;
  anonMb: number;
  fileMb: number;
  threads: number;
}

/** MiB from /proc/<pid>/status: resident (anonymous and file-backed), its peak, and the threads. */
export function vmStatus(pid: number): Memory {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? NaN);
  return { rssMb: field('VmRSS') / 1024, hwmMb: field('VmHWM') / 1024, anonMb: field('RssAnon') / 1024, fileMb: field('RssFile') / 1024, threads: field('Threads') };
}

/** MiB as the targets count them: MB of 10^6 bytes. */
export const megabytes = (mib: number) => mib * 1.048576;

/** `virsh` on an agent's root, once the agent is gone (libvirt lets one process embed a root). */
export async function virsh(uri: string, args: string[]): Promise<string> {
  return (await execFileAsync('virsh', ['-q', '-c', uri, ...args], { encoding: 'utf8', timeout: 120_000 })).stdout;
}

/** Every domain of a benchmark's own agent root destroyed and undefined, and their QEMU logs removed; how many there were. */
export async function clearAgentRoot(uri: string, root: string): Promise<number> {
  const names = (await virsh(uri, ['list', '--all', '--name'])).split('\n').map((n) => n.trim()).filter(Boolean);
  for (const name of names) {
    await virsh(uri, ['destroy', name]).catch(() => undefined);
    await virsh(uri, ['undefine', name]).catch(() => undefined);
  }
  const logs = path.join(root, 'log', 'qemu');
  if (existsSync(logs)) for (const f of readdirSync(logs)) rmSync(path.join(logs, f), { force: true });
  return names.length;
}

/** Processes whose command line contains one of the marks (pgrep -f), this one's pgrep excepted. */
export async function processesMarked(marks: string[]): Promise<string[]> {
  const found: string[] = [];
  for (const mark of marks) {
    try {
      const { stdout } = await execFileAsync('pgrep', ['-a', '-f', mark], { encoding: 'utf8' });
      found.push(...stdout.split('\n').filter((l) => l.trim() !== '' && !l.includes('pgrep')));
    } catch {
      // pgrep exits 1 when nothing matches.
    }
  }
  return found;
}

/** After a benchmark: the processes still naming one of `marks`, and the private RabbitMQ's own, printed; true when there are none. */
export async function noneLeftBehind(marks: string[], rabbitDir: string | undefined): Promise<boolean> {
  const leftovers = [...(await processesMarked(marks)), ...(rabbitDir ? markedProcesses(rabbitDir).map(String) : [])];
  if (leftovers.length > 0) console.error(`processes left behind:\n${leftovers.join('\n')}`);
  return leftovers.length === 0;
}

/**
 * kill -9 of the agent's process, as an operator's `kill -9 <pid>` or the OOM
 * killer does (not its process group: a QEMU libvirt is forking for it dies
 * anyway, in its handshake with the dead parent); resolves once it is gone.
 */
export async function killAgent(agent: ComputeAgent): Promise<void> {
  try {
    process.kill(agent.child.pid!, 'SIGKILL');
  } catch {
    // Gone already.
  }
  await agent.exited;
}

/** A sample's value from the agent's /metrics (open, no token): the first line of `name` (with its labels, if given); null when absent. */
export async function metricValue(apiPort: number, name: string): Promise<number | null> {
  const text = await (await fetch(`http://127.0.0.1:${apiPort}/metrics`, { signal: AbortSignal.timeout(10_000) })).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
  return line === undefined ? null : Number(line.slice(line.lastIndexOf(' ') + 1));
}

/** CPU seconds (user + system) a process has used, from /proc/<pid>/stat. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // utime and stime are fields 14 and 15 of stat(5), 12 and 13 after the command.
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

const sortedCopy = (xs: readonly number[]) => [...xs].sort((a, b) => a - b);

/** The p-th percentile (nearest rank) of `xs`. */
export function percentile(xs: readonly number[], p: number): number {
  const s = sortedCopy(xs);
  if (s.length === 0) return NaN;
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

export const mean = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

/** The load average as `uptime` prints it. */
export const loadAverage = () => loadavg().map((l) => l.toFixed(2)).join(' ');
