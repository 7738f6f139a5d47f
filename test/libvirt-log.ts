import { closeSync, openSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';

/**
 * libvirt's own log (its internal view of what novalet reports as typed
 * errors) goes to a file in the test workers, as the CLI sends it to
 * <state_path>/libvirt.log, so that a failing test's output stays readable.
 *
 * Not with a file output in LIBVIRT_LOG_OUTPUTS: libvirt's forked child
 * re-opens such a file at the lowest free descriptor, which in a vitest fork
 * is where libuv's signal pipe sits, and libuv's fork handler closes it
 * under libvirt (see hypervisor/libvirt/fork-safety.ts). libvirt logs to
 * stderr instead, and the worker's stderr is the file; the workers' own
 * output reaches vitest over its IPC channel, not stderr.
 */
export const TEST_LIBVIRT_LOG = path.join(tmpdir(), 'novalet-test-libvirt.log');

process.env.LIBVIRT_LOG_OUTPUTS ??= '3:stderr';

type Koffi = typeof import('koffi');
const koffi = createRequire(import.meta.url)('koffi') as Koffi;
const dup2 = koffi.load('libc.so.6').func('int dup2(int oldfd, int newfd)') as (from: number, to: number) => number;
const log = openSync(TEST_LIBVIRT_LOG, 'a');
if (dup2(log, 2) !== 2) throw new Error(`test/libvirt-log.ts: could not send stderr to ${TEST_LIBVIRT_LOG}`);
closeSync(log);
