import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ImageCache, ImageError } from '../../hypervisor/instance/image-cache.js';
import { DEFAULT_IMAGE_URL_RULES } from '../../hypervisor/instance/image-url-rules.js';
import { createOverlay, imageInfo } from '../../hypervisor/instance/qemu-img.js';

/** Real qemu-img, a real HTTP server on 127.0.0.1. */

const work = mkdtempSync(path.join(tmpdir(), 'novalet-images-'));
const qcow2 = path.join(work, 'base.qcow2');
execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', qcow2, '64M']);
const qcow2Bytes = readFileSync(qcow2);
const qcow2Sha = createHash('sha256').update(qcow2Bytes).digest('hex');
const raw = path.join(work, 'base.raw');
writeFileSync(raw, Buffer.alloc(1024 * 1024, 7));
const rawSha = createHash('sha256').update(readFileSync(raw)).digest('hex');

let server: Server;
let base: string;
const requests: string[] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    requests.push(req.url ?? '');
    if (req.url === '/good.qcow2') {
      res.writeHead(200, { 'content-length': qcow2Bytes.length });
      res.end(qcow2Bytes);
    } else if (req.url === '/cut.qcow2') {
      // Promise the whole image, send half, then drop the connection.
      res.writeHead(200, { 'content-length': qcow2Bytes.length });
      res.write(qcow2Bytes.subarray(0, Math.floor(qcow2Bytes.length / 2)), () => res.destroy());
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
});

function newCache(): ImageCache {
  // The server is on 127.0.0.1, which image downloads reach only when allowed_hosts names it.
  return new ImageCache(mkdtempSync(path.join(work, '_base-')), { urlRules: { ...DEFAULT_IMAGE_URL_RULES, allowed_hosts: ['127.0.0.1'], allowed_ports: [] } });
}

async function refusal(promise: Promise<unknown>): Promise<ImageError> {
  const err = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ImageError);
  return err as ImageError;
}

describe('image cache', () => {
  it('downloads an image once, verifies it and serves it from the cache after', async () => {
    const cache = newCache();
    const before = requests.length;
    const first = await cache.fetch({ source: `${base}/good.qcow2`, checksum: `sha256:${qcow2Sha}` });
    expect(first.path).toBe(path.join(cache.baseDir, qcow2Sha));
    expect(first.format).toBe('qcow2');
    expect(first.virtualSize).toBe(64 * 1024 * 1024);
    const second = await cache.fetch({ source: `${base}/good.qcow2`, checksum: `sha256:${qcow2Sha}` });
    expect(second).toEqual(first);
    expect(requests.length - before).toBe(1);
    expect(readdirSync(cache.baseDir).sort()).toEqual([qcow2Sha, `${qcow2Sha}.info.json`]);
  });

  it('refuses a checksum mismatch and keeps nothing', async () => {
    const cache = newCache();
    const err = await refusal(cache.fetch({ source: `${base}/good.qcow2`, checksum: `sha256:${'0'.repeat(64)}` }));
    expect(err.code).toBe('IMAGE_CHECKSUM_MISMATCH');
    expect(err.message).toContain(`has SHA-256 ${qcow2Sha}, not the expected ${'0'.repeat(64)}`);
    expect(readdirSync(cache.baseDir)).toEqual([]);
  });

  it('never keeps a download cut off half way', async () => {
    const cache = newCache();
    const err = await refusal(cache.fetch({ source: `${base}/cut.qcow2`, checksum: `sha256:${qcow2Sha}` }));
    expect(err.code).toBe('IMAGE_DOWNLOAD_FAILED');
    expect(err.message).toContain('was cut off');
    expect(readdirSync(cache.baseDir)).toEqual([]);
  });

  it('names the HTTP status of a failed download', async () => {
    const err = await refusal(newCache().fetch({ source: `${base}/missing.qcow2`, checksum: `sha256:${qcow2Sha}` }));
    expect(err.code).toBe('IMAGE_DOWNLOAD_FAILED');
    expect(err.message).toContain('404');
  });

  it('caches a local file by its content, with or without a checksum', async () => {
    const cache = newCache();
    const got = await cache.fetch({ source: raw });
    expect(got.sha256).toBe(rawSha);
    expect(got.format).toBe('raw');
    const again = await cache.fetch({ source: raw, checksum: `sha256:${rawSha}` });
    expect(again.path).toBe(got.path);
  });

  it('names a missing local file', async () => {
    const err = await refusal(newCache().fetch({ source: path.join(work, 'nope.qcow2') }));
    expect(err.code).toBe('IMAGE_NOT_FOUND');
    expect(err.message).toContain('nope.qcow2');
    expect(err.message).toContain('ENOENT');
  });

  it('refuses an image with a backing file and a format it does not boot', async () => {
    const withBacking = path.join(work, 'overlay.qcow2');
    await createOverlay(qcow2, 'qcow2', withBacking);
    expect((await imageInfo(withBacking)).backingFile).toBe(qcow2);
    expect((await refusal(newCache().fetch({ source: withBacking }))).code).toBe('IMAGE_HAS_BACKING_FILE');
    const vmdk = path.join(work, 'disk.vmdk');
    execFileSync('qemu-img', ['create', '-q', '-f', 'vmdk', vmdk, '16M']);
    const err = await refusal(newCache().fetch({ source: vmdk }));
    expect(err.code).toBe('IMAGE_FORMAT_UNSUPPORTED');
    expect(err.message).toContain('vmdk');
  });

  it('makes a qcow2 overlay on a cached base with qemu-img', async () => {
    const cached = await newCache().fetch({ source: qcow2 });
    const overlay = path.join(work, 'instance-disk.qcow2');
    await createOverlay(cached.path, cached.format, overlay);
    const info = await imageInfo(overlay);
    expect(info.format).toBe('qcow2');
    expect(info.backingFile).toBe(cached.path);
    expect(info.virtualSize).toBe(64 * 1024 * 1024);
  });
});
