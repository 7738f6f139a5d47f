import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { afterEach } from 'vitest';

export const TOP = path.resolve(import.meta.dirname, '../..');
export const NOVALET = path.join(TOP, 'dist/cli/main.js');

export interface RunResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** The commands this test file started that have not ended yet. */
const running = new Set<ChildProcess>();

/**
 * A command still running when its test ends (the test failed or timed out)
 * must not outlive it: asked to stop as an operator would (SIGTERM, which
 * novalet cleans up on), then killed with its whole process group.
 */
export async function stopLeftoverCommands(): Promise<void> {
  const left = [...running];
  for (const child of left) signalGroup(child, 'SIGTERM');
  await Promise.all(
    left.map(
      (child) =>
        new Promise<void>((resolve) => {
          const timer = setTimeout(() => {
            signalGroup(child, 'SIGKILL');
            resolve();
          }, 10_000);
          child.once('close', () => {
            clearTimeout(timer);
            resolve();
          });
          if (child.exitCode !== null || child.signalCode !== null) {
            clearTimeout(timer);
            resolve();
          }
        }),
    ),
  );
}

function signalGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  try {
    process.kill(-child.pid!, signal);
  } catch {
    // Gone already.
  }
}

afterEach(stopLeftoverCommands, 30_000);

/** Starts the built `novalet` (optionally under another program) as the leader of a process group of its own, tracked until it ends. */
export function startNovalet(args: string[], options: { prefix?: string[]; env?: NodeJS.ProcessEnv } = {}): ChildProcess {
  const argv = [...(options.prefix ?? []), process.execPath, NOVALET, ...args];
  // Without the test workers' LIBVIRT_LOG_OUTPUTS, so that the command routes libvirt's log as it does for operators.
  const { LIBVIRT_LOG_OUTPUTS: _routedForTests, ...inherited } = process.env;
  const child = spawn(argv[0] as string, argv.slice(1), { env: { ...inherited, ...options.env }, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(child);
  child.on('close', () => running.delete(child));
  return child;
}

/** Runs the built `novalet` command (optionally under another program, e.g. `unshare`). */
export function runNovalet(args: string[], options: { prefix?: string[]; env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = startNovalet(args, options);
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}
