/**
 * A real small file system for disk-full tests: a tmpfs of `sizeKiB` mounted
 * (as root) on a fresh temp folder, with a way to fill it to the last byte.
 * unmount() is idempotent; call it in the test's clean-up.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

export interface SmallFileSystem {
  dir: string;
  /** Fills it with a file until no byte is left; returns that file's path. */
  fill(): string;
  /** Frees what fill() took. */
  free(): void;
  unmount(): void;
}

export function mountSmallFileSystem(sizeKiB: number): SmallFileSystem {
  const dir = mkdtempSync(path.join(tmpdir(), 'nvl-small-fs-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeKiB}k,mode=0755`, 'tmpfs', dir]);
  let mounted = true;
  const filler = path.join(dir, 'filler');
  return {
    dir,
    fill() {
      const fs = statfsSync(dir);
      writeFileSync(filler, Buffer.alloc(fs.bavail * fs.bsize));
      // tmpfs may leave a partial page: top it up byte by byte until it refuses.
      try {
        for (let i = 0; i < 65536; i++) writeFileSync(filler, Buffer.alloc(1), { flag: 'a' });
      } catch {
        // full
      }
      return filler;
    },
    free() {
      rmSync(filler, { force: true });
    },
    unmount() {
      if (!mounted) return;
      mounted = false;
      execFileSync('umount', ['-l', dir]);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
