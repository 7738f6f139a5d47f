import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { constants } from 'node:os';
import { RESERVED_FDS } from '../hypervisor/libvirt/reserved-low-fds.js';

/**
 * Runs this same command again in a child Node whose fds 3–19 are held on
 * /dev/null from the start, so that libvirt can fork QEMU from it (see
 * hypervisor/libvirt/reserved-low-fds.ts). The child shares the terminal:
 * Ctrl-C reaches it directly; this process only passes on SIGTERM/SIGHUP
 * and returns the child's exit status.
 */
export function relaunchWithReservedFds(): Promise<number> {
  const devNull = openSync('/dev/null', 'r');
  const count = RESERVED_FDS.last - RESERVED_FDS.first + 1;
  const stdio = ['inherit', 'inherit', 'inherit', ...Array<number>(count).fill(devNull)] as const;
  const child = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], { stdio: [...stdio] });
  closeSync(devNull);
  const pass = (signal: NodeJS.Signals) => child.kill(signal);
  const ignoreInterrupt = () => undefined;
  process.on('SIGTERM', pass);
  process.on('SIGHUP', pass);
  process.on('SIGINT', ignoreInterrupt);
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      process.off('SIGTERM', pass);
      process.off('SIGHUP', pass);
      process.off('SIGINT', ignoreInterrupt);
      resolve(code ?? 128 + (signal ? constants.signals[signal] : 0));
    });
  });
}
