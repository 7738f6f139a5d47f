/**
 * KvmIoctls on the real kernel: the device opened with Node's fs
 * (O_RDWR; libuv adds O_CLOEXEC), ioctl(2) called through koffi. koffi and libc are
 * loaded on first use, once per process.
 */
import fs from 'node:fs';
import { createRequire } from 'node:module';
import { NovaletError } from '../../config/novalet-error.js';
import { errnoName } from './errno-name.js';
import type { IoctlOutcome, KvmIoctls } from './kvm-ioctls.js';

type Koffi = typeof import('koffi');
type IoctlFunction = (fd: number, request: number, ...varargs: unknown[]) => number;

let loaded: { koffi: Koffi; ioctl: IoctlFunction } | null = null;

function libc(): { koffi: Koffi; ioctl: IoctlFunction } {
  if (loaded === null) {
    try {
      const koffi = createRequire(import.meta.url)('koffi') as Koffi;
      const ioctl = koffi.load('libc.so.6').func('int ioctl(int fd, unsigned long req, ...)') as IoctlFunction;
      loaded = { koffi, ioctl };
    } catch (error) {
      throw new NovaletError(
        'LIBC_UNAVAILABLE',
        `novalet could not call ioctl(2) through koffi to ask /dev/kvm (${(error as Error).message}).`,
        'Run novalet on a glibc Linux host (libc.so.6) with the koffi package installed including its native module.',
      );
    }
  }
  return loaded;
}

function systemErrno(error: unknown): string {
  const code = (error as NodeJS.ErrnoException).code;
  return typeof code === 'string' ? code : String(error);
}

export const koffiKvmIoctls: KvmIoctls = {
  open(path: string): IoctlOutcome {
    try {
      // libuv adds O_CLOEXEC to every open(2) on Linux (Node has no constant for it).
      return { ok: true, value: fs.openSync(path, fs.constants.O_RDWR) };
    } catch (error) {
      return { ok: false, errno: systemErrno(error) };
    }
  },

  ioctl(fd: number, request: number, arg?: number): IoctlOutcome {
    const { koffi, ioctl } = libc();
    // Always pass the third argument: without it the register holds whatever the
    // previous call left there, and KVM_GET_API_VERSION answers EINVAL to a non-zero arg.
    const result = ioctl(fd, request, 'unsigned long', arg ?? 0);
    if (result < 0) return { ok: false, errno: errnoName(koffi.errno()) };
    return { ok: true, value: result };
  },

  close(fd: number): void {
    try {
      fs.closeSync(fd);
    } catch {
      // Already closed or never ours: nothing more to release.
    }
  },
};
