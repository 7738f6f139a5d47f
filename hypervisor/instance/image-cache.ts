import { createHash, randomBytes } from 'node:crypto';
import { pathExists } from '../host/path-exists.js';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { NovaletError } from '../../config/novalet-error.js';
import { isImageUrl, type ImageRef } from './spec.js';
import { imageInfo } from './qemu-img.js';

/**
 * Images fetched once into `<instances_path>/_base`, named by their SHA-256,
 * as nova caches Glance images there. Each download or copy goes to a
 * temporary file first and is renamed into place only when complete and
 * verified: a partial or corrupt image is never used.
 */

export class ImageError extends NovaletError {}

export interface CachedImage {
  path: string;
  sha256: string;
  /** qemu-img's name for the format (qcow2, raw, …). */
  format: string;
  virtualSize: number;
}

/** Formats novalet boots from; anything else is refused rather than guessed at. */
const BOOTABLE_FORMATS = new Set(['qcow2', 'raw']);

function expectedDigest(ref: ImageRef): string | null {
  return ref.checksum ? ref.checksum.slice('sha256:'.length) : null;
}


/** Copies or downloads into `tmp`, hashing on the way; returns the hex digest. */
async function fetchInto(source: string, tmp: string): Promise<string> {
  const hash = createHash('sha256');
  const hasher = new Transform({
    transform(chunk: Buffer, _enc, done) {
      hash.update(chunk);
      done(null, chunk);
    },
  });
  if (isImageUrl(source)) {
    let response: Response;
    try {
      response = await fetch(source, { redirect: 'follow' });
    } catch (err) {
      throw new ImageError('IMAGE_DOWNLOAD_FAILED', `The image ${source} could not be downloaded: ${(err as Error).message}.`, 'Check the URL and that the server is reachable.');
    }
    if (!response.ok || !response.body) {
      throw new ImageError('IMAGE_DOWNLOAD_FAILED', `The image ${source} could not be downloaded: the server answered ${response.status} ${response.statusText}.`, 'Check the URL.');
    }
    const declared = Number(response.headers.get('content-length') ?? NaN);
    try {
      await pipeline(Readable.fromWeb(response.body as never), hasher, createWriteStream(tmp, { mode: 0o644 }));
    } catch (err) {
      throw new ImageError('IMAGE_DOWNLOAD_FAILED', `The download of ${source} was cut off: ${(err as Error).message}.`, 'Try again; nothing partial was kept.');
    }
    if (Number.isFinite(declared) && (await stat(tmp)).size !== declared) {
      throw new ImageError('IMAGE_DOWNLOAD_FAILED', `The download of ${source} was cut off: got ${(await stat(tmp)).size} of ${declared} bytes.`, 'Try again; nothing partial was kept.');
    }
  } else {
    try {
      await pipeline(createReadStream(source), hasher, createWriteStream(tmp, { mode: 0o644 }));
    } catch (err) {
      throw new ImageError('IMAGE_NOT_FOUND', `The image file ${source} cannot be read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}.`, 'Give the path of an existing, readable image file.');
    }
  }
  return hash.digest('hex');
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
  constructor(readonly baseDir: string) {}

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
  async fetch(ref: ImageRef): Promise<CachedImage> {
    const expected = expectedDigest(ref);
    if (expected !== null && (await pathExists(this.cachedPath(expected)))) {
      const info = (await this.readSidecar(expected)) ?? (await inspect(this.cachedPath(expected), ref.source));
      return { path: this.cachedPath(expected), sha256: expected, ...info };
    }
    await mkdir(this.baseDir, { recursive: true });
    const tmp = path.join(this.baseDir, `.partial-${randomBytes(8).toString('hex')}`);
    try {
      const actual = await fetchInto(ref.source, tmp);
      if (expected !== null && actual !== expected) {
        throw new ImageError('IMAGE_CHECKSUM_MISMATCH', `The image ${ref.source} has SHA-256 ${actual}, not the expected ${expected}.`, 'Check the checksum and the image; the image was not kept.');
      }
      const info = await inspect(tmp, ref.source);
      const final = this.cachedPath(actual);
      await writeFile(`${final}.info.json`, JSON.stringify(info));
      await rename(tmp, final);
      return { path: final, sha256: actual, ...info };
    } finally {
      await rm(tmp, { force: true });
    }
  }
}
