/**
 * Shared by the libvirt integration tests.
 *
 * Roots: every test file opens one embedded connection in beforeAll, from a
 * pool of persistent roots under /var/tmp/novalet-test-libvirt (slot-0 …
 * slot-3, see embedded-root-pool.ts). libvirt lets one process hold a root, and
 * vitest runs files in parallel forks, so each fork takes the first slot no
 * other fork holds; the slots keep libvirt's QEMU capability cache between
 * runs, so only the first use of a slot pays the QEMU probe (about 12 s here).
 *
 * Domains are named `novalet-test-<file>-<random>` so that no two files or
 * runs can collide, and every test destroys and undefines what it created.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { promisify } from 'node:util';
import { openEmbeddedRootFromPool } from '../../hypervisor/libvirt/embedded-root-pool.js';
import type { LibvirtConnection } from '../../hypervisor/libvirt/connection.js';
import type { LibvirtDomain } from '../../hypervisor/libvirt/domain.js';

export const TEST_POOL_BASE = '/var/tmp/novalet-test-libvirt';
export const REPO = path.resolve(import.meta.dirname, '../..');

const run = promisify(execFile);

export interface TestRoot {
  connection: LibvirtConnection;
  root: string;
}

export async function openTestRoot(): Promise<TestRoot> {
  return openEmbeddedRootFromPool(TEST_POOL_BASE);
}

export function testDomainName(file: string): string {
  return `novalet-test-${file}-${randomBytes(4).toString('hex')}`;
}

export interface MinimalDomainOptions {
  name: string;
  /** Where the serial console is written. */
  serialLog: string;
  type?: 'qemu' | 'kvm';
  emulator?: string;
  uuid?: string;
}

/** A guest with no disk: SeaBIOS starts and waits, which is all these tests need of QEMU. */
export function minimalDomainXml(options: MinimalDomainOptions): string {
  return [
    `<domain type='${options.type ?? 'qemu'}'>`,
    `  <name>${options.name}</name>`,
    options.uuid === undefined ? '' : `  <uuid>${options.uuid}</uuid>`,
    `  <memory unit='MiB'>64</memory>`,
    `  <vcpu>1</vcpu>`,
    `  <os><type arch='x86_64' machine='pc'>hvm</type></os>`,
    `  <features><acpi/></features>`,
    `  <devices>`,
    options.emulator === undefined ? '' : `    <emulator>${options.emulator}</emulator>`,
    `    <serial type='file'><source path='${options.serialLog}'/><target port='0'/></serial>`,
    `  </devices>`,
    `</domain>`,
  ]
    .filter((line) => line !== '')
    .join('\n');
}

/** Stops and forgets a domain whatever its state; for finally blocks. */
export async function removeDomain(domain: LibvirtDomain | null): Promise<void> {
  if (domain === null || domain.freed) return;
  await domain.remove();
  await domain.free();
}

/** Command lines of the processes whose command line mentions `text` (pgrep -f), other than pgrep itself. */
export async function processesMentioning(text: string): Promise<string[]> {
  try {
    const { stdout } = await run('pgrep', ['-a', '-f', text]);
    return stdout.split('\n').filter((line) => line.trim() !== '');
  } catch (error) {
    if ((error as { code?: number }).code === 1) return [];
    throw error;
  }
}

/** Waits until `check` returns a value other than undefined, or fails after `timeoutMs`. */
export async function waitFor<T>(what: string, check: () => T | undefined, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/**
 * Closes every inherited descriptor above stderr, then runs the command, so
 * that it starts as a plain `node` from a shell would, whatever descriptors
 * the test runner itself was started with.
 */
const ONLY_STDIO = 'for fd in $(seq 3 255); do eval "exec $fd<&-"; done; exec "$@"';

/** Closes every descriptor above stderr, then opens the ones `redirections` names (e.g. `3</dev/null 5>/tmp/x`). */
export function onlyStdioThen(redirections: string): string[] {
  return ['/bin/bash', '-c', `for fd in $(seq 3 255); do eval "exec $fd<&-"; done; exec ${redirections} "$@"`, 'bash'];
}

/**
 * Runs a Node ES module program (text) against the built dist/ tree; resolves
 * with its output and exit code. With `onlyStdio`, the program starts with no
 * descriptor open but stdin, stdout and stderr; with `inherited`, with those
 * and the descriptors its shell redirections open.
 */
export async function runNodeProgram(
  source: string,
  timeoutMs = 60_000,
  options: { onlyStdio?: boolean; inherited?: string } = {},
): Promise<{ stdout: string; stderr: string; code: number | null; ms: number }> {
  const started = Date.now();
  const node = [process.execPath, '--input-type=module', '-e', source];
  const prefix = options.inherited !== undefined ? onlyStdioThen(options.inherited) : options.onlyStdio ? ['/bin/bash', '-c', ONLY_STDIO, 'bash'] : [];
  const [file, ...args] = [...prefix, ...node];
  try {
    const { stdout, stderr } = await run(file!, args, {
      cwd: REPO,
      timeout: timeoutMs,
    });
    return { stdout, stderr, code: 0, ms: Date.now() - started };
  } catch (error) {
    const failed = error as { stdout?: string; stderr?: string; code?: number | null };
    return { stdout: failed.stdout ?? '', stderr: failed.stderr ?? '', code: failed.code ?? null, ms: Date.now() - started };
  }
}
