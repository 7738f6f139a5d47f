#!/usr/bin/env node
import { NovaletError } from '../config/novalet-error.js';
import { Interrupted } from '../config/interrupted.js';
import { printable } from '../config/quote-for-message.js';
import { CliUsageError } from './cli-usage-error.js';
import { runForkSafe } from '../hypervisor/libvirt/fork-safety.js';
import { libvirtCallPool } from '../hypervisor/libvirt/call-pool.js';
import { abandonedCalls, endProbes } from '../hypervisor/libvirt/abandoned-calls.js';

/** A command returns its exit status; output is its own business. */
export type Command = (args: string[]) => Promise<number>;

/** Each command's module is loaded only when it runs: `validate` should not pay for `run`'s imports. */
const lazily =
  <K extends string>(load: () => Promise<Record<K, Command>>, name: K): Command =>
  async (args) =>
    (await load())[name](args);

/**
 * `startsGuests`: the invocation may have libvirt's embedded driver start a
 * domain, whose double fork libuv can break; such a process is relaunched
 * with a safe descriptor layout first (see fork-safety.ts). Asking libvirt
 * for capabilities, comparisons and baselines starts no domain and needs no
 * relaunch, which would double Node's start-up.
 * `asksLibvirt`: the command will call libvirt, so its call thread is started
 * before the command's modules load (the two take about as long; see
 * bench/RESULTS.md for what it saves `validate`).
 */
const COMMANDS: Record<string, { run: Command; summary: string; startsGuests?: (args: string[]) => boolean; asksLibvirt?: boolean }> = {
  validate: {
    run: lazily(() => import('./validate.js'), 'runValidate'),
    summary: 'check what this host can virtualize, and what instances will run with here',
    startsGuests: (args) => args.includes('--self-test'),
    asksLibvirt: true,
  },
  config: { run: lazily(() => import('./config.js'), 'runConfig'), summary: 'config show [--json] [--show-secrets] | config sample' },
  capabilities: { run: lazily(() => import('./capabilities.js'), 'runCapabilities'), summary: "what this host advertises about CPUs: nova's cpu_info, guest CPU models, CPU traits", asksLibvirt: true },
  'cpu-compare': { run: lazily(() => import('./cpu-compare.js'), 'runCpuCompare'), summary: 'is the CPU in FILE compatible with this host (as virsh hypervisor-cpu-compare)', asksLibvirt: true },
  'cpu-baseline': { run: lazily(() => import('./cpu-baseline.js'), 'runCpuBaseline'), summary: 'the CPU every CPU in the FILEs can provide (as virsh hypervisor-cpu-baseline)', asksLibvirt: true },
  compute: {
    run: lazily(() => import('./compute.js'), 'runCompute'),
    summary: 'the compute service: consumes compute.<host> on RabbitMQ until SIGTERM (see novalet compute --help)',
    startsGuests: (args) => !args.includes('--help'),
    asksLibvirt: true,
  },
  run: { run: lazily(() => import('./run.js'), 'runRun'), summary: 'run one instance in the foreground, its console on stdout (see novalet run --help)', startsGuests: () => true, asksLibvirt: true },
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
    if (command.startsGuests?.(rest)) {
      // libvirt cannot fork QEMU from a plainly started node: see hypervisor/libvirt/fork-safety.ts.
      const relaunched = await runForkSafe();
      if (relaunched !== null) return relaunched;
    }
    if (command.asksLibvirt && !rest.includes('--help')) libvirtCallPool().warm();
    return await command.run(rest);
  } catch (err) {
    // A command that failed before its first libvirt call: see LibvirtCallPool.settled.
    await libvirtCallPool().settled();
    if (err instanceof Interrupted) {
      process.stderr.write(`novalet: ${err.message}\n`);
      return err.exitStatus;
    }
    if (err instanceof NovaletError) {
      // Bad input and host problems get one line, never a stack. The message
      // quotes text from files and from libvirt: escaped here, once for all,
      // so that no control character or line break reaches the terminal.
      process.stderr.write(`novalet: ${printable(err.message)}\n`);
      return 2;
    }
    throw err;
  }
}

main(process.argv.slice(2)).then(
  (status) => {
    process.exitCode = status;
    // A command ended by a signal or its --timeout may have stopped waiting for a libvirt call that
    // cannot be interrupted (the first probe of QEMU): it is not waited for now either. What the
    // command made is removed by then; the probe's QEMU is stopped, so that libvirt's call ends.
    if (abandonedCalls() > 0) {
      endProbes();
      process.exit(status);
    }
  },
  (err: unknown) => {
    // Not bad input: a bug. Show everything, line breaks kept, but no raw control characters.
    const shown = String((err as Error)?.stack ?? err).split('\n').map(printable).join('\n');
    process.stderr.write(`novalet: internal error: ${shown}\n`);
    process.exitCode = 70;
  },
);
