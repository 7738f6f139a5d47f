/**
 * A real `novalet compute` process for tests and benchmarks: started in a
 * process group of its own, its JSON log lines (stdout) parsed as they
 * come; and the build of the test guest by name that both send.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { FORK_SAFE_ENV } from '../../hypervisor/libvirt/fork-safety.js';

export interface ComputeAgent {
  child: ChildProcess;
  /** Its log lines, parsed (a line that is not JSON is kept as `{msg, unparsed: true}`). */
  lines: Record<string, unknown>[];
  exited: Promise<number | null>;
  stderr: () => string;
}

export interface ComputeAgentOptions {
  /** The built `novalet` (run-novalet.ts's NOVALET for tests; a compiled benchmark's own path — run-novalet.ts is vitest's only). */
  program: string;
  /** Node's own flags before the program (the unit's, for a benchmark). */
  nodeFlags?: string[];
  env?: NodeJS.ProcessEnv;
  /** Descriptors passed on beyond stdio, e.g. 3 … 12 on /dev/null as the unit's bash gives them. */
  extraFds?: number[];
}

export function startComputeAgent(configFile: string, options: ComputeAgentOptions): ComputeAgent {
  // Without the test workers' libvirt log routing and without a NOTIFY_SOCKET the caller did not mean.
  const { LIBVIRT_LOG_OUTPUTS: _routed, NOTIFY_SOCKET: _notMeant, [FORK_SAFE_ENV]: _relaunched, ...inherited } = process.env;
  const child = spawn(process.execPath, [...(options.nodeFlags ?? []), options.program, 'compute', '--config-file', configFile], {
    env: { ...inherited, ...options.env },
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe', ...(options.extraFds ?? [])],
  });
  const lines: Record<string, unknown>[] = [];
  let buffered = '';
  child.stdout!.on('data', (d: Buffer) => {
    buffered += d.toString();
    let nl;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      try {
        lines.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        lines.push({ msg: line, unparsed: true });
      }
    }
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  return { child, lines, exited, stderr: () => stderr };
}

/** A build of the test guest by name from `[compute] image_dir` (kernel + initramfs), one vCPU. */
export function testGuestBuild(uuid: string, name: string, options: { memoryMb: number; cmdline: string }) {
  return {
    instance: {
      uuid,
      name,
      flavor: { name: 'm1.nano', vcpus: 1, memory_mb: options.memoryMb, root_gb: 0, extra_specs: {} },
      image: { kernel: { name: 'vmlinuz' }, ramdisk: { name: 'initramfs.cpio.gz' }, cmdline: options.cmdline, properties: {} },
    },
  };
}

/** A TCP port free on 127.0.0.1 just now (for the agent's HTTP API). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}
