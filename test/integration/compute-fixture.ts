/**
 * A real `novalet compute` for the fault tests (compute-*.test.ts): its
 * configuration (the test guest from image_dir, TCG, an embedded libvirt
 * root of the test file's own under /var/tmp so that libvirt's QEMU probe is
 * paid once per machine), its start, `kill -9`, its log lines, its HTTP API
 * with the bearer token the service made, and a clean-up that leaves no
 * novalet, QEMU or domain behind.
 */
import type { ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'vitest';
import { LibvirtConnection } from '../../hypervisor/libvirt/connection.js';
import { prepareEmbeddedRoot } from '../../hypervisor/libvirt/embedded-root.js';
import { TEST_GUEST_DIR } from '../guest/test-guest.js';
import { processesMentioning } from '../libvirt/libvirt-test-support.js';
import type { BusClient } from '../support/bus-client.js';
import { startComputeAgent, testGuestBuild, type ComputeAgent } from '../support/compute-agent.js';
import { NOVALET } from '../support/run-novalet.js';

export const CMDLINE = 'console=ttyS0 novalet.name=faults';

export interface ComputeConfigOptions {
  host: string;
  statePath: string;
  transportUrl: string;
  apiPort: number;
  /** The embedded libvirt root (one process at a time may hold it). */
  root: string;
  /** Lines added to sections, e.g. { DEFAULT: ['rpc_response_timeout = 5'] }. */
  sections?: Record<string, string[]>;
}

/** The configuration text: the sections in a fixed order, the caller's lines after the fixture's. */
export function computeConfigText(o: ComputeConfigOptions): string {
  const sections: Record<string, string[]> = {
    DEFAULT: [`host = ${o.host}`, `state_path = ${o.statePath}`, `transport_url = ${o.transportUrl}`, 'report_interval = 2', 'graceful_shutdown_timeout = 30'],
    // Instances run under TCG on any host; the KVM judgement has tests of its own.
    libvirt: ['virt_type = qemu', `connection_uri = qemu:///embed?root=${o.root}`],
    compute: [`image_dir = ${TEST_GUEST_DIR}`],
    api: [`port = ${o.apiPort}`],
    oslo_messaging_rabbit: ['rabbit_retry_interval = 1', 'rabbit_interval_max = 2'],
  };
  for (const [section, lines] of Object.entries(o.sections ?? {})) sections[section] = [...(sections[section] ?? []), ...lines];
  return Object.entries(sections)
    .map(([section, lines]) => [`[${section}]`, ...lines].join('\n'))
    .join('\n\n');
}

export function writeComputeConfig(file: string, o: ComputeConfigOptions): void {
  writeFileSync(file, `${computeConfigText(o)}\n`);
}

/** A build of the test guest by name (kernel and initramfs from image_dir), 128 MiB. */
export function kernelBuild(uuid: string, name: string) {
  return testGuestBuild(uuid, name, { memoryMb: 128, cmdline: CMDLINE });
}

/** The guest reached user space with its power button watched (its console's marker): a stop is then a clean ACPI shutdown, not shutdown_timeout's wait. */
export async function guestReady(client: BusClient, host: string, uuid: string): Promise<void> {
  await waitUntil(`${uuid} booted`, async () => JSON.stringify((await client.call(host, 'console', { uuid, lines: 50 })).result ?? '').includes('NOVALET-TEST-GUEST-READY'), 120_000, 500);
}

/** The QEMU processes of an instance. */
export async function qemuOf(uuid: string): Promise<string[]> {
  return (await processesMentioning(uuid)).filter((line) => line.includes('qemu-system'));
}

export async function waitUntil<T>(what: string, check: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs: number, everyMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = await check();
    if (found !== undefined && found !== false) return found;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** The agents of one test file: started, killed, and none left at the end. */
export class Agents {
  readonly #running = new Set<ChildProcess>();

  constructor(private readonly configFile: string) {}

  start(env: NodeJS.ProcessEnv = {}): ComputeAgent {
    const agent = startComputeAgent(this.configFile, { program: NOVALET, env });
    this.#running.add(agent.child);
    const started = ++this.#started;
    agent.child.on('close', () => {
      this.#running.delete(agent.child);
      // For a failure's post-mortem: FAULTS_LOG_DIR=<folder> keeps every agent's log lines.
      const keep = process.env.FAULTS_LOG_DIR;
      if (keep) writeFileSync(path.join(keep, `${path.basename(path.dirname(this.configFile))}-${started}.log`), agent.lines.map((l) => JSON.stringify(l)).join('\n') + `\n${agent.stderr()}`);
    });
    return agent;
  }

  #started = 0;

  /** Started and serving (its 'novalet compute is serving' line). */
  async serving(env: NodeJS.ProcessEnv = {}, timeoutMs = 120_000): Promise<ComputeAgent> {
    const agent = this.start(env);
    await waitForLine(agent, (l) => l.msg === 'novalet compute is serving', timeoutMs);
    return agent;
  }

  /** kill -9 of the agent's process group (the relaunched child with it), waited for. */
  async kill9(agent: ComputeAgent): Promise<void> {
    try {
      process.kill(-agent.child.pid!, 'SIGKILL');
    } catch {
      // Gone already.
    }
    await agent.exited;
  }

  /** SIGTERM, as systemd stops it; exit 0 expected. */
  async stop(agent: ComputeAgent): Promise<number | null> {
    agent.child.kill('SIGTERM');
    return agent.exited;
  }

  /** Whatever is left: SIGTERM, then SIGKILL of the group. */
  async stopAll(): Promise<void> {
    const left = [...this.#running];
    for (const child of left) child.kill('SIGTERM');
    await Promise.all(
      left.map(
        (child) =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null || child.signalCode !== null) return resolve();
            const timer = setTimeout(resolve, 15_000);
            child.once('close', () => {
              clearTimeout(timer);
              resolve();
            });
          }),
      ),
    );
    for (const child of this.#running) {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // Gone.
      }
    }
  }
}

/** Waits for a log line of the agent; fails early if it exited. */
export async function waitForLine(agent: ComputeAgent, match: (l: Record<string, unknown>) => boolean, timeoutMs: number): Promise<Record<string, unknown>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = agent.lines.find(match);
    if (found) return found;
    if (agent.child.exitCode !== null || agent.child.signalCode !== null) throw new Error(`novalet compute exited (${agent.child.exitCode ?? agent.child.signalCode}) before the line; last lines: ${JSON.stringify(agent.lines.slice(-5))}; stderr: ${agent.stderr().slice(-2000)}`);
    if (Date.now() > deadline) throw new Error(`no such log line in ${timeoutMs} ms; last lines: ${JSON.stringify(agent.lines.slice(-5))}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The HTTP API with the token the service made in `$state_path/api-token`. */
export function httpApi(statePath: string, port: number): { get: (route: string) => Promise<Response>; json: <T = Record<string, unknown>>(route: string) => Promise<T> } {
  const headers = (): Record<string, string> => ({ authorization: `Bearer ${readFileSync(path.join(statePath, 'api-token'), 'utf8').trim()}` });
  const get = (route: string): Promise<Response> => fetch(`http://127.0.0.1:${port}${route}`, { headers: route === '/healthz' || route === '/metrics' ? {} : headers() });
  return {
    get,
    json: async <T,>(route: string): Promise<T> => {
      const response = await get(route);
      if (response.status !== 200) throw new Error(`GET ${route}: ${response.status} ${await response.text()}`);
      return (await response.json()) as T;
    },
  };
}

/** Removes every domain left in the root (the service leaves guests running when it stops). */
export async function destroyAllDomains(root: string): Promise<void> {
  const connection = await LibvirtConnection.open(await prepareEmbeddedRoot(root));
  try {
    for (const domain of await connection.listAllDomains()) await domain.remove().finally(() => domain.free());
  } finally {
    await connection.close();
  }
}

/** Nothing of the file's run is left: no novalet compute on its configuration, no QEMU of its root, no RabbitMQ of its folder. */
export async function expectNothingLeft(configFile: string, root: string, rabbitDir: string | undefined): Promise<void> {
  expect(await processesMentioning(configFile)).toEqual([]);
  expect(await processesMentioning(root)).toEqual([]);
  if (rabbitDir) expect(await processesMentioning(rabbitDir)).toEqual([]);
}
