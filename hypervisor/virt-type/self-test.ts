import { execFile } from 'node:child_process';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
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
  at: string;
}

export interface SelfTestResult extends SelfTestRecord {
  /** True when taken from the cache of an earlier run in this boot. */
  cached: boolean;
}

/** The cache file's name under `[DEFAULT] state_path`. */
export const SELF_TEST_CACHE = 'kvm-self-test.json';

/** Boots the test guest under KVM within `timeoutMs`; provided by the launch path. */
export type SelfTestBoot = (timeoutMs: number) => Promise<SelfTestOutcome>;

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

/** The cached self-test result, if one was recorded in this boot for this QEMU version. */
export async function readCachedSelfTest(cacheFile: string, bootId: string, version: string): Promise<SelfTestResult | null> {
  const cached = await readCache(cacheFile);
  if (cached && cached.bootId === bootId && cached.qemuVersion === version) return { ...cached, cached: true };
  return null;
}

/**
 * The self-test result for this boot and QEMU version: from the cache file
 * when it matches (unless `again`), else by booting the guest (and caching
 * what it showed).
 */
export async function kvmSelfTest(options: {
  cacheFile: string;
  bootId: string;
  qemuVersion: string;
  timeoutMs: number;
  boot: SelfTestBoot;
  /** Boot the guest even when this boot has a result on record (`novalet validate --self-test`). */
  again?: boolean;
}): Promise<SelfTestResult> {
  const cached = options.again ? null : await readCachedSelfTest(options.cacheFile, options.bootId, options.qemuVersion);
  if (cached) return cached;
  const outcome = await options.boot(options.timeoutMs);
  const record: SelfTestRecord = { ...outcome, bootId: options.bootId, qemuVersion: options.qemuVersion, at: new Date().toISOString() };
  await writeCache(options.cacheFile, record);
  return { ...record, cached: false };
}
