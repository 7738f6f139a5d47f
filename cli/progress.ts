import type { Logger } from '../config/logger.js';

/**
 * How a command says what a long, silent phase is doing (the KVM self-test,
 * libvirt's first probe of QEMU in a new state folder): a plain line on a
 * terminal, where a person waits; a structured log line otherwise, where a
 * log collector reads.
 */
export function progressReporter(command: string, log: Logger, terminal = process.stderr.isTTY === true): (what: string) => void {
  return terminal ? (what) => void process.stderr.write(`novalet ${command}: ${what} …\n`) : (what) => log.info({ command, phase: what }, what);
}
