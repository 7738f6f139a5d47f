import { spawn } from 'node:child_process';
import path from 'node:path';

export const TOP = path.resolve(import.meta.dirname, '../..');
export const NOVALET = path.join(TOP, 'dist/cli/main.js');

export interface RunResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the built `novalet` command (optionally under another program, e.g. `unshare`). */
export function runNovalet(args: string[], options: { prefix?: string[]; env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> {
  const argv = [...(options.prefix ?? []), process.execPath, NOVALET, ...args];
  return new Promise((resolve, reject) => {
    // Without the test workers' LIBVIRT_LOG_OUTPUTS, so that the command routes libvirt's log as it does for operators.
    const { LIBVIRT_LOG_OUTPUTS: _routedForTests, ...inherited } = process.env;
    const child = spawn(argv[0] as string, argv.slice(1), { env: { ...inherited, ...options.env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}
