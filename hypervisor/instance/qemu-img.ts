import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import path from 'node:path';
import { diskFull } from '../../config/disk-full.js';
import { NovaletError } from '../../config/novalet-error.js';

const run = promisify(execFile);

export const QEMU_IMG = '/usr/bin/qemu-img';

export class QemuImgError extends NovaletError {
  constructor(action: string, detail: string) {
    super('QEMU_IMG_FAILED', `qemu-img could not ${action}: ${detail.trim().split('\n').at(-1) ?? detail}.`, 'Check that qemu-utils is installed and the image is intact.');
  }
}

export interface ImageInfo {
  format: string;
  virtualSize: number;
  backingFile: string | null;
}

export async function imageInfo(file: string): Promise<ImageInfo> {
  try {
    // -U: do not take the image lock, so a base in use by running guests can be inspected.
    const { stdout } = await run(QEMU_IMG, ['info', '-U', '--output=json', file]);
    const info = JSON.parse(stdout) as { format: string; 'virtual-size': number; 'backing-filename'?: string };
    return { format: info.format, virtualSize: info['virtual-size'], backingFile: info['backing-filename'] ?? null };
  } catch (err) {
    throw new QemuImgError(`read ${file}`, (err as { stderr?: string }).stderr || (err as Error).message);
  }
}

/**
 * A qcow2 overlay on a base image. The backing format is always stated
 * (-F): letting QEMU probe it would let a raw image pretend to be qcow2.
 * Aborting `signal` kills qemu-img and rejects with the signal's reason.
 */
export async function createOverlay(base: string, baseFormat: string, overlay: string, sizeBytes?: number, signal?: AbortSignal): Promise<void> {
  const args = ['create', '-q', '-f', 'qcow2', '-F', baseFormat, '-b', base, overlay];
  if (sizeBytes !== undefined) args.push(String(sizeBytes));
  try {
    await run(QEMU_IMG, args, signal ? { signal } : {});
  } catch (err) {
    if (signal?.aborted) throw signal.reason;
    const words = (err as { stderr?: string }).stderr || (err as Error).message;
    // qemu-img says ENOSPC in strerror's words: the file system is full, not qemu-img broken.
    if (/No space left on device|Disk quota exceeded/.test(words)) throw diskFull(path.dirname(overlay), `the overlay ${overlay}`);
    throw new QemuImgError(`create the overlay ${overlay}`, words);
  }
}
