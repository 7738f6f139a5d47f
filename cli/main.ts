#!/usr/bin/env node
import { NovaletError } from '../config/novalet-error.js';
import { CliUsageError } from './cli-usage-error.js';
import { runValidate } from './validate.js';
import { runConfig } from './config.js';
import { runRun } from './run.js';
import { runCpuCompare } from './cpu-compare.js';
import { runCpuBaseline } from './cpu-baseline.js';
import { runCapabilities } from './capabilities.js';
import { runForkSafe } from '../hypervisor/libvirt/fork-safety.js';

/** A command returns its exit status; output is its own business. */
export type Command = (args: string[]) => Promise<number>;

/** Commands that embed libvirt's QEMU driver (they may need relaunching: see fork-safety.ts). */
const COMMANDS: Record<string, { run: Command; summary: string; libvirt?: boolean }> = {
  validate: { run: runValidate, summary: 'check what this host can virtualize, and what instances will run with here', libvirt: true },
  config: { run: runConfig, summary: 'config show [--json] [--show-secrets] | config sample' },
  capabilities: { run: runCapabilities, summary: "what this host advertises about CPUs: nova's cpu_info, guest CPU models, CPU traits", libvirt: true },
  'cpu-compare': { run: runCpuCompare, summary: 'is the CPU in FILE compatible with this host (as virsh hypervisor-cpu-compare)', libvirt: true },
  'cpu-baseline': { run: runCpuBaseline, summary: 'the CPU every CPU in the FILEs can provide (as virsh hypervisor-cpu-baseline)', libvirt: true },
  run: { run: runRun, summary: 'run one instance in the foreground, its console on stdout (see novalet run --help)', libvirt: true },
};

export const USAGE = [
  'usage: novalet <command> [options]',
  '',
  'commands:',
  ...Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(Math.max(...Object.keys(COMMANDS).map((n) => n.length)))}  ${c.summary}`),
  '',
  'common options: --config-file FILE (repeatable; later files win), --config-dir DIR, --debug',
  'default configuration: /etc/novalet/novalet.conf',
].join('\n');

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return name === undefined ? 2 : 0;
  }
  const command = COMMANDS[name];
  try {
    if (!command) throw new CliUsageError(`unknown command '${name}'; the commands are: ${Object.keys(COMMANDS).join(', ')}.`);
    if (command.libvirt) {
      // libvirt cannot fork QEMU from a plainly started node: see hypervisor/libvirt/fork-safety.ts.
      const relaunched = await runForkSafe();
      if (relaunched !== null) return relaunched;
    }
    return await command.run(rest);
  } catch (err) {
    if (err instanceof NovaletError) {
      // Bad input and host problems get one line, never a stack.
      process.stderr.write(`novalet: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
}

main(process.argv.slice(2)).then(
  (status) => {
    process.exitCode = status;
  },
  (err: unknown) => {
    // Not bad input: a bug. Show everything.
    process.stderr.write(`novalet: internal error: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exitCode = 70;
  },
);
