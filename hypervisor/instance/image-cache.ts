import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, rename, rm, statfs, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { maskUrlCredentials } from '../../config/mask-credentials.js';
import { pathExists } from '../host/path-exists.js';
import { PRIVATE_MODES, type FileModes } from './file-modes.js';
import { DEFAULT_DOWNLOAD_LIMITS, diskFullError, ImageError, transferInto, type DebugLog, type DownloadLimits, type SpaceBudget } from './image-download.js';
import { DEFAULT_IMAGE_URL_RULES, type AddressEnvironment, type ImageUrlRules } from './image-url-rules.js';
import { imageInfo } from './qemu-img.js';
import type { ImageRef } from './spec.js';

/**
 * Images fetched once into `<instances_path>/_base`, named by their SHA-256,
 * as nova caches Glance images there. Each download or copy goes to a
 * temporary file first and is renamed into place only when complete and
 * verified: a partial or corrupt image is never used. Downloads and copies
 * go through image-download.ts, bounded in time, rate and size, their URLs
 * held to the image URL rules (image-url-rules.ts). A file system that
 * fills up under a write is DISK_FULL, and nothing of the image is left.
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
  /** glance's [import_filtering_opts] for every URL and redirect; glance's defaults unless given. */
  urlRules?: ImageUrlRules;
  /** DNS and this host's addresses for those rules; the system's unless given (tests inject their own). */
  addresses?: AddressEnvironment;
  /** Where details the faults leave out are logged (a connection's errno). */
  log?: DebugLog;
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
  readonly urlRules: ImageUrlRules;
  readonly #reservedMb: number;
  readonly #addresses: AddressEnvironment | undefined;
  readonly #log: DebugLog | undefined;

  constructor(
    readonly baseDir: string,
    options: ImageCacheOptions = {},
  ) {
    this.limits = options.limits ?? DEFAULT_DOWNLOAD_LIMITS;
    this.modes = options.modes ?? PRIVATE_MODES;
    this.#reservedMb = options.reservedHostDiskMb ?? 0;
    this.urlRules = options.urlRules ?? DEFAULT_IMAGE_URL_RULES;
    this.#addresses = options.addresses;
    this.#log = options.log;
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
    const tmp = path.join(this.baseDir, `.partial-${randomBytes(8).toString('hex')}`);
    let sidecar: string | null = null;
    try {
      await mkdir(this.baseDir, { recursive: true, mode: this.modes.dir });
      // Explicitly: mkdir's mode is masked by the umask and leaves a folder made earlier as it was.
      await chmod(this.baseDir, this.modes.dir);
      const { sha256: actual } = await transferInto(ref.source, tmp, {
        limits: this.limits,
        space: await this.space(),
        fileMode: this.modes.file,
        signal: options.signal,
        urlRules: this.urlRules,
        addresses: this.#addresses,
        log: this.#log,
      });
      if (expected !== null && actual !== expected) {
        throw new ImageError('IMAGE_CHECKSUM_MISMATCH', `The image ${shown} has SHA-256 ${actual}, not the expected ${expected}.`, 'Check the checksum and the image; the image was not kept.');
      }
      const info = await inspect(tmp, shown);
      const final = this.cachedPath(actual);
      sidecar = `${final}.info.json`;
      await writeFile(sidecar, JSON.stringify(info), { mode: this.modes.file });
      await rename(tmp, final);
      sidecar = null;
      return { path: final, sha256: actual, ...info };
    } catch (err) {
      // A sidecar written only in part (a full disk) must not describe an image that is not there.
      if (sidecar !== null) await rm(sidecar, { force: true });
      throw diskFullError(err, this.baseDir, `The image ${shown}`) ?? err;
    } finally {
      await rm(tmp, { force: true });
    }
  }
}
