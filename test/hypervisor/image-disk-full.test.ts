import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ImageCache, ImageError } from '../../hypervisor/instance/image-cache.js';
import type { DownloadLimits } from '../../hypervisor/instance/image-download.js';
import { DEFAULT_IMAGE_URL_RULES } from '../../hypervisor/instance/image-url-rules.js';

/**
 * A full disk under the image cache, on a real small file system: a 4 MiB
 * tmpfs mounted for this file (the tests run as root) and unmounted after.
 * A write that finds it full is DISK_FULL naming the folder and the remedy,
 * never INTERNAL, and nothing of the image is left.
 */

const MiB = 1024 * 1024;
const work = mkdtempSync(path.join(tmpdir(), 'novalet-disk-full-'));
const mountPoint = path.join(work, 'small-fs');
const LIMITS: DownloadLimits = { idleTimeoutMs: 5000, timeoutMs: 30_000, maxBytes: 1024 * MiB, minRate: 0, minRateWindowMs: 60_000 };
const RULES = { ...DEFAULT_IMAGE_URL_RULES, allowed_hosts: ['127.0.0.1'], allowed_ports: [] };

let server: Server;
let base: string;
const responses = new Set<ServerResponse>();
/** Set by a test: the server sends the first part of /gated, calls `started`, and sends the rest once `gate` settles. */
let started: () => void = () => undefined;
let gate: Promise<void> = Promise.resolve();

beforeAll(async () => {
  mkdirSync(mountPoint);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m,mode=0700', 'tmpfs', mountPoint]);
  server = createServer((req, res) => {
    responses.add(res);
    res.on('close', () => responses.delete(res));
    // No Content-Length: how much comes is known only as it comes.
    res.writeHead(200);
    if (req.url === '/gated') {
      res.write(Buffer.alloc(64 * 1024, 1), () => {
        started();
        void gate.then(() => {
          for (let i = 0; i < 3; i++) res.write(Buffer.alloc(MiB, 2));
          res.end();
        });
      });
    } else if (req.url === '/eight-mib') {
      for (let i = 0; i < 8; i++) res.write(Buffer.alloc(MiB, 3));
      res.end();
    } else {
      res.end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterEach(() => {
  // Each test starts from an empty file system.
  for (const name of readdirSync(mountPoint)) rmSync(path.join(mountPoint, name), { recursive: true, force: true });
});

afterAll(async () => {
  for (const res of responses) res.destroy();
  await new Promise((resolve) => server?.close(resolve));
  try {
    execFileSync('umount', [mountPoint]);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});

function newCache(): ImageCache {
  const baseDir = path.join(mountPoint, '_base');
  mkdirSync(baseDir, { recursive: true });
  return new ImageCache(baseDir, { limits: LIMITS, urlRules: RULES });
}

/** Fills the file system but `leave` bytes. */
function fill(leave: number): void {
  const fs = statfsSync(mountPoint);
  writeFileSync(path.join(mountPoint, 'filler'), Buffer.alloc(fs.bavail * fs.bsize - leave, 9));
}

async function refusal(promise: Promise<unknown>): Promise<ImageError> {
  const err = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ImageError);
  return err as ImageError;
}

const remedy = (dir: string): string => `Free space in the file system holding ${dir}, or move [DEFAULT] instances_path to a larger one; nothing of the image was kept.`;

describe('a full disk under the image cache', () => {
  it('that fills up while the image is written is DISK_FULL, naming the folder and the remedy; nothing is left', async () => {
    const cache = newCache();
    let release: () => void = () => undefined;
    gate = new Promise<void>((resolve) => (release = resolve));
    const downloading = new Promise<void>((resolve) => (started = resolve));
    const fetching = refusal(cache.fetch({ source: `${base}/gated` }));
    await downloading;
    // The free space was measured when the download began; another writer takes it meanwhile.
    fill(128 * 1024);
    release();
    const err = await fetching;
    expect(err.code).toBe('DISK_FULL');
    expect(err.message).toBe(`The image ${base}/gated could not be written to ${cache.baseDir}: its file system is full (ENOSPC). ${remedy(cache.baseDir)}`);
    expect(readdirSync(cache.baseDir)).toEqual([]);
  });

  it('when the image fits but its description does not, is DISK_FULL too, and neither is left', async () => {
    const cache = newCache();
    const image = path.join(work, 'one-mib.raw');
    writeFileSync(image, Buffer.alloc(MiB, 7));
    // Room for the image to the byte, none for its .info.json.
    fill(MiB);
    const err = await refusal(cache.fetch({ source: image }));
    expect(err.code).toBe('DISK_FULL');
    expect(err.message).toBe(`The image ${image} could not be written to ${cache.baseDir}: its file system is full (ENOSPC). ${remedy(cache.baseDir)}`);
    expect(readdirSync(cache.baseDir)).toEqual([]);
  });

  it('an image larger than the free space is refused by the budget before the disk fills (IMAGE_NO_SPACE)', async () => {
    const cache = newCache();
    const err = await refusal(cache.fetch({ source: `${base}/eight-mib` }));
    expect(err.code).toBe('IMAGE_NO_SPACE');
    expect(err.message).toContain(`free in ${cache.baseDir} beyond reserved_host_disk_mb = 0`);
    expect(readdirSync(cache.baseDir)).toEqual([]);
    const fs = statfsSync(mountPoint);
    expect(fs.bfree).toBe(fs.blocks);
  });
});
