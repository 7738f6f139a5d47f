import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, rename, rm, statfs, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { maskUrlCredentials } from '../../config/mask-credentials.js';
import { pathExists } from '../host/path-exists.js';
import { PRIVATE_MODES, type FileModes } from './file-modes.js';
import { DEFAULT_DOWNLOAD_LIMITS, ImageError, transferInto, type DownloadLimits, type SpaceBudget } from './image-download.js';
import { imageInfo } from './qemu-img.js';
import type { ImageRef } from './spec.js';

/**
 * Images fetched once into `<instances_path>/_base`, named by their SHA-256,
 * as nova caches Glance images there. Each download or copy goes to a
 * temporary file first and is renamed into place only when complete and
 * verified: a partial or corrupt image is never used. Downloads and copies
 * go through image-download.ts, bounded in time and size.
 */

export { ImageError };

export interface CachedImage {
  path: string;
  sha256: string;
  /** qemu-img's name for the format (qcow2, raw, …). */
  format: string;
  virtualSize: number;
}

export interface ImageCacheOptions {
  /** Timeouts and size limit of every download; the options' defaults unless given. */
  limits?: DownloadLimits;
  /** `[DEFAULT] reserved_host_disk_mb`: room a download must leave free. */
  reservedHostDiskMb?: number;
  /** Modes of `_base` and its files (file-modes.ts); owner-only unless given. */
  modes?: FileModes;
}

export interface FetchOptions {
  /** Aborting it stops the download; nothing of it is kept (IMAGE_DOWNLOAD_ABORTED). */
  signal?: AbortSignal | undefined;
}

/** Formats novalet boots from; anything else is refused rather than guessed at. */
const BOOTABLE_FORMATS = new Set(['qcow2', 'raw']);

function expectedDigest(ref: ImageRef): string | null {
  return ref.checksum ? ref.checksum.slice('sha256:'.length) : null;
}

interface SidecarInfo {
  format: string;
  virtualSize: number;
}

async function inspect(file: string, source: string): Promise<SidecarInfo> {
  const info = await imageInfo(file);
  if (!BOOTABLE_FORMATS.has(info.format)) {
    throw new ImageError('IMAGE_FORMAT_UNSUPPORTED', `The image ${source} is in ${info.format} format, which novalet does not boot.`, 'Convert it to qcow2 or raw with qemu-img convert.');
  }
  if (info.backingFile !== null) {
    // As nova: an image that points at another file could read anything on the host.
    throw new ImageError('IMAGE_HAS_BACKING_FILE', `The image ${source} has a backing file (${info.backingFile}); images must stand alone.`, 'Flatten it with qemu-img convert first.');
  }
  return { format: info.format, virtualSize: info.virtualSize };
}

export class ImageCache {
  readonly limits: DownloadLimits;
  readonly modes: FileModes;
  readonly #reservedMb: number;

  constructor(
    readonly baseDir: string,
    options: ImageCacheOptions = {},
  ) {
    this.limits = options.limits ?? DEFAULT_DOWNLOAD_LIMITS;
    this.modes = options.modes ?? PRIVATE_MODES;
    this.#reservedMb = options.reservedHostDiskMb ?? 0;
  }

  /** What a download may take of the file system `_base` is on. */
  private async space(): Promise<SpaceBudget> {
    const fs = await statfs(this.baseDir);
    return { bytes: fs.bavail * fs.bsize - this.#reservedMb * 1024 * 1024, dir: this.baseDir, reservedMb: this.#reservedMb };
  }

  private cachedPath(sha256: string): string {
    return path.join(this.baseDir, sha256);
  }

  private async readSidecar(sha256: string): Promise<SidecarInfo | null> {
    try {
      return JSON.parse(await readFile(`${this.cachedPath(sha256)}.info.json`, 'utf8')) as SidecarInfo;
    } catch {
      return null;
    }
  }

  /** The image in the cache, fetched and verified first if it is not there yet. */
  async fetch(ref: ImageRef, options: FetchOptions = {}): Promise<CachedImage> {
    const expected = expectedDigest(ref);
    const shown = maskUrlCredentials(ref.source);
    if (expected !== null && (await pathExists(this.cachedPath(expected)))) {
      const info = (await this.readSidecar(expected)) ?? (await inspect(this.cachedPath(expected), shown));
      return { path: this.cachedPath(expected), sha256: expected, ...info };
    }
    await mkdir(this.baseDir, { recursive: true, mode: this.modes.dir });
    // Explicitly: mkdir's mode is masked by the umask and leaves a folder made earlier as it was.
    await chmod(this.baseDir, this.modes.dir);
    const tmp = path.join(this.baseDir, `.partial-${randomBytes(8).toString('hex')}`);
    try {
      const { sha256: actual } = await transferInto(ref.source, tmp, { limits: this.limits, space: await this.space(), fileMode: this.modes.file, signal: options.signal });
      if (expected !== null && actual !== expected) {
        throw new ImageError('IMAGE_CHECKSUM_MISMATCH', `The image ${shown} has SHA-256 ${actual}, not the expected ${expected}.`, 'Check the checksum and the image; the image was not kept.');
      }
      const info = await inspect(tmp, shown);
      const final = this.cachedPath(actual);
      await writeFile(`${final}.info.json`, JSON.stringify(info), { mode: this.modes.file });
      await rename(tmp, final);
      return { path: final, sha256: actual, ...info };
    } finally {
      await rm(tmp, { force: true });
    }
  }
}
