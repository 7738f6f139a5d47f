import { execFile } from 'node:child_process';
import { mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

/**
 * The KVM self-test: boot the small test guest under KVM once per host boot
 * (and QEMU version) and see it reach user space in time. /dev/kvm can answer
 * every ioctl and libvirt can report a kvm domain "running" while the guest
 * hangs after the firmware — the field report's trap, and these build
 * machines' (kvm_pvm). Only a guest that prints its marker proves KVM works.
 */

export interface SelfTestOutcome {
  passed: boolean;
  /** What happened, as a sentence: the marker's time, or why it failed. */
  detail: string;
  durationMs: number;
}

export interface SelfTestRecord extends SelfTestOutcome {
  bootId: string;
  qemuVersion: string;
  /** The emulator binary the test ran (emulatorStamp): while it is unchanged, its version need not be asked again. */
  emulatorStamp?: string;
  at: string;
}

export interface SelfTestResult extends SelfTestRecord {
  /** True when taken from the cache of an earlier run in this boot. */
  cached: boolean;
}

/** The cache file's name under `[DEFAULT] state_path`. */
export const SELF_TEST_CACHE = 'kvm-self-test.json';

/**
 * A self-test that could not be run for a reason that is not about KVM:
 * QEMU did not start, or libvirt refused the domain, under TCG as well. It
 * says nothing about KVM, so it is never recorded as this boot's result.
 */
export interface SelfTestNotRun {
  notRun: string;
}

export function selfTestDidNotRun(result: SelfTestOutcome | SelfTestNotRun): result is SelfTestNotRun {
  return 'notRun' in result;
}

/** Boots the test guest under KVM within `timeoutMs`; provided by the launch path. */
export type SelfTestBoot = (timeoutMs: number) => Promise<SelfTestOutcome | SelfTestNotRun>;

const run = promisify(execFile);

export async function readBootId(root = '/'): Promise<string> {
  return (await readFile(path.join(root, 'proc/sys/kernel/random/boot_id'), 'utf8')).trim();
}

/** "QEMU emulator version 7.2.x (Debian …)" → the version words. */
export async function qemuVersion(emulator: string): Promise<string> {
  const { stdout } = await run(emulator, ['--version']);
  return stdout.split('\n')[0]?.replace(/^QEMU emulator version\s*/, '').trim() ?? 'unknown';
}

async function readCache(file: string): Promise<SelfTestRecord | null> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as SelfTestRecord;
  } catch {
    return null;
  }
}

async function writeCache(file: string, record: SelfTestRecord): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, `${JSON.stringify(record, null, 2)}\n`);
  await rename(tmp, file);
}

/** The emulator binary as it is now (device, inode, size, modification time): an upgrade of QEMU changes it. */
export async function emulatorStamp(emulator: string): Promise<string> {
  const info = await stat(emulator);
  return `${info.dev}:${info.ino}:${info.size}:${info.mtimeMs}`;
}

/**
 * This boot's recorded result for `emulator`, if there is one. QEMU is asked
 * its version (a process start, some 20 ms of validate's 0.5 s) only when the
 * binary is not the one the record names.
 */
export async function readRecordedSelfTest(cacheFile: string, bootId: string, emulator: string): Promise<SelfTestResult | null> {
  const cached = await readCache(cacheFile);
  if (cached === null || cached.bootId !== bootId) return null;
  if (cached.emulatorStamp !== undefined && cached.emulatorStamp === (await emulatorStamp(emulator).catch(() => null))) return { ...cached, cached: true };
  return cached.qemuVersion === (await qemuVersion(emulator)) ? { ...cached, cached: true } : null;
}

/** The cached self-test result, if one was recorded in this boot for this QEMU version. */
export async function readCachedSelfTest(cacheFile: string, bootId: string, version: string): Promise<SelfTestResult | null> {
  const cached = await readCache(cacheFile);
  if (cached && cached.bootId === bootId && cached.qemuVersion === version) return { ...cached, cached: true };
  return null;
}

/**
 * The self-test result for this boot and QEMU version: from the cache file
 * when it matches (unless `again`), else by booting the guest (and caching
 * what it showed about KVM; a test that could not run is not cached).
 */
export async function kvmSelfTest(options: {
  cacheFile: string;
  bootId: string;
  qemuVersion: string;
  /** Recorded with the result (emulatorStamp). */
  emulatorStamp?: string;
  timeoutMs: number;
  boot: SelfTestBoot;
  /** Boot the guest even when this boot has a result on record (`novalet validate --self-test`). */
  again?: boolean;
}): Promise<SelfTestResult | SelfTestNotRun> {
  const cached = options.again ? null : await readCachedSelfTest(options.cacheFile, options.bootId, options.qemuVersion);
  if (cached) return cached;
  const outcome = await options.boot(options.timeoutMs);
  if (selfTestDidNotRun(outcome)) return outcome;
  const record: SelfTestRecord = {
    ...outcome,
    bootId: options.bootId,
    qemuVersion: options.qemuVersion,
    ...(options.emulatorStamp === undefined ? {} : { emulatorStamp: options.emulatorStamp }),
    at: new Date().toISOString(),
  };
  await writeCache(options.cacheFile, record);
  return { ...record, cached: false };
}
