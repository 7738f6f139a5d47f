/**
 * A compute host as the durability and load benchmarks use it: a real
 * `novalet compute` started as its systemd unit starts it (bench/agent-process.ts)
 * on an embedded libvirt root of the benchmark's own, with a state folder and
 * a configuration that outlive its process, so that it can be killed
 * (`kill -9`) and started again on the same records, as an operator's
 * restart would.
 */
import { randomUUID } from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { ComputeAgent } from '../test/support/compute-agent.js';
import { killAgent, metricValue, servingPid, startAgentAsUnit, stopAgent, waitFor, writeAgentConfig, type AgentOptions } from './agent-process.js';

export class BenchHost {
  agent: ComputeAgent | null = null;
  /** Every agent process this host has had, for the leftovers check. */
  readonly pids: number[] = [];

  private constructor(
    readonly name: string,
    readonly stateDir: string,
    readonly configFile: string,
    readonly apiPort: number,
    readonly root: string,
  ) {}

  /**
   * A host named `<prefix>-<random>`, its state in `stateDir` (made when
   * missing), its configuration in `configDir`, on the libvirt root `root`
   * (`uri` its connection URI).
   */
  static async create(prefix: string, where: { stateDir: string; configDir: string; root: string; uri: string; transportUrl: string }, options: AgentOptions = {}): Promise<BenchHost> {
    const name = `${prefix}-${randomUUID().slice(0, 8)}`;
    if (!existsSync(where.stateDir)) mkdirSync(where.stateDir, { recursive: true, mode: 0o700 });
    const configFile = path.join(where.configDir, `${name}.conf`);
    const { apiPort } = await writeAgentConfig(configFile, { host: name, stateDir: where.stateDir, transportUrl: where.transportUrl, connectionUri: where.uri }, options);
    return new BenchHost(name, where.stateDir, configFile, apiPort, where.root);
  }

  /** Starts its agent (not waiting for it to serve). */
  start(): ComputeAgent {
    if (this.agent && this.alive) throw new Error(`the agent of ${this.name} runs already`);
    this.agent = startAgentAsUnit(this.configFile);
    this.pids.push(this.agent.child.pid!);
    return this.agent;
  }

  /** Until its agent serves; ms waited. */
  async serving(): Promise<number> {
    const t0 = performance.now();
    await servingPid(this.agent!);
    return performance.now() - t0;
  }

  get alive(): boolean {
    const child = this.agent?.child;
    return child !== undefined && child.exitCode === null && child.signalCode === null;
  }

  get pid(): number {
    return this.agent!.child.pid!;
  }

  /** kill -9, then started again at once; `wait`: until it serves (ms). */
  async killAndRestart(wait: boolean): Promise<number> {
    await killAgent(this.agent!);
    this.keepLog();
    this.start();
    return wait ? this.serving() : 0;
  }

  /** SIGTERM (SIGKILL after 60 s); its exit code. */
  async stop(): Promise<number | null | 'killed'> {
    if (!this.agent) return 0;
    const code = await stopAgent(this.agent);
    this.keepLog();
    return code;
  }

  /** With NOVALET_BENCH_LOGS=<folder>: each agent process's log lines are kept in <folder>/<host>.log, one process after the other. */
  keepLog(): void {
    const dir = process.env.NOVALET_BENCH_LOGS;
    if (!dir || !this.agent) return;
    mkdirSync(dir, { recursive: true });
    appendFileSync(path.join(dir, `${this.name}.log`), `${this.agent.lines.map((l) => JSON.stringify(l)).join('\n')}\n${this.agent.stderr()}`);
  }

  /** Log lines of its current agent matching `msg`. */
  lines(msg: string): Record<string, unknown>[] {
    return this.agent?.lines.filter((l) => l.msg === msg) ?? [];
  }

  /** Its outbox's unconfirmed messages (the /metrics gauge). */
  outboxPending(): Promise<number | null> {
    return metricValue(this.apiPort, 'novalet_outbox_pending');
  }

  /** The guest of an instance printed the test guest's marker on its console (it booted to user space, so it answers the power button). */
  booted(uuid: string): boolean {
    try {
      return readFileSync(path.join(this.stateDir, 'instances', uuid, 'console.log'), 'utf8').includes('NOVALET-TEST-GUEST-READY');
    } catch {
      return false;
    }
  }

  /** Until every one of `uuids` has booted (fails after `timeoutMs` or if the agent exits). */
  async waitBooted(uuids: readonly string[], timeoutMs = 120_000): Promise<void> {
    await waitFor(`${uuids.length} guest(s) of ${this.name} to boot`, () => uuids.every((u) => this.booted(u)), timeoutMs, this.agent ?? undefined);
  }
}
