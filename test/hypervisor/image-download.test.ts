import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statfsSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fileModesFor, PRIVATE_MODES, QEMU_USER_APART_MODES } from '../../hypervisor/instance/file-modes.js';
import { ImageCache, ImageError, type ImageCacheOptions } from '../../hypervisor/instance/image-cache.js';
import { MAX_REDIRECTS, type DownloadLimits } from '../../hypervisor/instance/image-download.js';
import { DEFAULT_IMAGE_URL_RULES, type ImageUrlRules } from '../../hypervisor/instance/image-url-rules.js';
import { imageCacheFor } from '../../hypervisor/instance/libvirt-driver.js';
import { parseConfigText } from '../../config/load-config.js';

/**
 * Downloads into the image cache against hostile and broken servers: a real
 * HTTP server on 127.0.0.1 (and a raw TCP one for bodies that disagree with
 * their Content-Length), real qemu-img for what does arrive. Every failure
 * must end within its limit, say what happened, and leave nothing in _base.
 */

const work = mkdtempSync(path.join(tmpdir(), 'novalet-downloads-'));
const qcow2 = path.join(work, 'base.qcow2');
execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', qcow2, '16M']);
const image = readFileSync(qcow2);
const imageSha = createHash('sha256').update(image).digest('hex');
const MiB = 1024 * 1024;

/** Short limits, so that each case ends in about a second (the minimum rate has tests of its own: image-download-rate.test.ts). */
const LIMITS: DownloadLimits = { idleTimeoutMs: 500, timeoutMs: 1500, maxBytes: 4 * MiB, minRate: 0, minRateWindowMs: 60_000 };
/** The image servers here are on 127.0.0.1, which image downloads reach only when allowed_hosts names it. */
const LOOPBACK_RULES: ImageUrlRules = { ...DEFAULT_IMAGE_URL_RULES, allowed_hosts: ['127.0.0.1'], allowed_ports: [] };

let server: Server;
let raw: NetServer;
let base: string;
let rawBase: string;
let refusedPort: number;
const sockets = new Set<Socket>();
const timers = new Set<NodeJS.Timeout>();

function every(ms: number, tick: () => boolean): void {
  const timer = setInterval(() => {
    if (!tick()) {
      clearInterval(timer);
      timers.delete(timer);
    }
  }, ms);
  timers.add(timer);
}

beforeAll(async () => {
  server = createServer((req, res) => {
    const url = req.url ?? '';
    const hop = /^\/hop\/(\d+)$/.exec(url);
    if (url === '/good.qcow2') {
      res.writeHead(200, { 'content-length': image.length });
      res.end(image);
    } else if (url === '/endless') {
      // Zeros as fast as the client takes them, with no Content-Length: the 3.3 GB in 9 s case.
      res.writeHead(200);
      const chunk = Buffer.alloc(64 * 1024);
      const pump = (): void => {
        while (!res.destroyed && res.write(chunk));
        if (!res.destroyed) res.once('drain', pump);
      };
      pump();
    } else if (url === '/slow-endless') {
      res.writeHead(200);
      every(20, () => !res.destroyed && res.write(Buffer.alloc(1024)) !== undefined);
    } else if (url === '/stall-body') {
      res.writeHead(200, { 'content-length': image.length });
      res.flushHeaders();
    } else if (url === '/stall-headers') {
      // Accepts the request and never answers.
    } else if (url === '/trickle') {
      // A byte every 300 ms: never idle for long, never done.
      res.writeHead(200, { 'content-length': 1000 });
      every(300, () => !res.destroyed && res.write('x') !== undefined);
    } else if (url === '/big-declared') {
      res.writeHead(200, { 'content-length': 100 * MiB });
      res.flushHeaders();
    } else if (url === '/to-file') {
      res.writeHead(302, { location: 'file:///etc/passwd' });
      res.end();
    } else if (url === '/to-secret') {
      res.writeHead(302, { location: `${base.replace('//', '//bob:hunter2@')}/missing` });
      res.end();
    } else if (url === '/loop') {
      res.writeHead(302, { location: '/loop' });
      res.end();
    } else if (hop) {
      const n = Number(hop[1]);
      res.writeHead(n === 1 ? 301 : 307, { location: n === 1 ? '/good.qcow2' : `/hop/${n - 1}` });
      res.end();
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  // Bodies that disagree with their Content-Length, written byte for byte.
  raw = createNetServer((socket) => {
    socket.on('error', () => undefined);
    socket.once('data', (request) => {
      const line = request.toString('latin1').split('\r\n', 1)[0]!;
      if (line.startsWith('GET /short ')) {
        socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${image.length}\r\n\r\n`);
        socket.end(image.subarray(0, image.length / 2));
      } else {
        // The whole image, then a megabyte its Content-Length does not count.
        socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${image.length}\r\n\r\n`);
        socket.write(image);
        socket.end(Buffer.alloc(MiB, 0xee));
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  await new Promise<void>((resolve) => raw.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  rawBase = `http://127.0.0.1:${(raw.address() as AddressInfo).port}`;
  // A port that was just listened on and closed: nothing answers there.
  const probe = createNetServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  refusedPort = (probe.address() as AddressInfo).port;
  await new Promise((resolve) => probe.close(resolve));
});

afterAll(async () => {
  for (const timer of timers) clearInterval(timer);
  for (const s of sockets) s.destroy();
  await new Promise((resolve) => server.close(resolve));
  await new Promise((resolve) => raw.close(resolve));
  rmSync(work, { recursive: true, force: true });
});

function newCache(options: ImageCacheOptions = {}): ImageCache {
  return new ImageCache(path.join(mkdtempSync(path.join(work, 'instances-')), '_base'), { limits: LIMITS, urlRules: LOOPBACK_RULES, ...options });
}

interface Refusal {
  err: ImageError;
  ms: number;
}

/** The fetch's refusal and how long it took; _base must hold nothing afterwards. */
async function refusal(cache: ImageCache, source: string, signal?: AbortSignal): Promise<Refusal> {
  const started = Date.now();
  const err = await cache.fetch({ source, checksum: `sha256:${imageSha}` }, { signal }).then(
    () => null,
    (e: unknown) => e,
  );
  const ms = Date.now() - started;
  expect(err).toBeInstanceOf(ImageError);
  expect(readdirSync(cache.baseDir)).toEqual([]);
  return { err: err as ImageError, ms };
}

describe('image downloads are bounded', () => {
  it('stops an endless body at image_download_max_size_mb', async () => {
    const { err, ms } = await refusal(newCache(), `${base}/endless`);
    expect(err.code).toBe('IMAGE_TOO_LARGE');
    expect(err.message).toBe(
      `The image ${base}/endless is more than image_download_max_size_mb = 4 (4194304 bytes). Use a smaller image, or raise [DEFAULT] image_download_max_size_mb; nothing of the image was kept.`,
    );
    expect(ms).toBeLessThan(LIMITS.timeoutMs);
  });

  it('stops an endless body at the free space beyond reserved_host_disk_mb', async () => {
    const cache = newCache({ limits: { ...LIMITS, maxBytes: 1024 * 1024 * MiB } });
    mkdirSync(cache.baseDir);
    const fs = statfsSync(cache.baseDir);
    const freeMb = Math.floor((fs.bavail * fs.bsize) / MiB);
    const reserved = freeMb - 3;
    const { err, ms } = await refusal(new ImageCache(cache.baseDir, { limits: cache.limits, urlRules: LOOPBACK_RULES, reservedHostDiskMb: reserved }), `${base}/endless`);
    expect(err.code).toBe('IMAGE_NO_SPACE');
    expect(err.message).toContain(`free in ${cache.baseDir} beyond reserved_host_disk_mb = ${reserved}`);
    expect(ms).toBeLessThan(LIMITS.timeoutMs);
  });

  it('refuses a Content-Length beyond the limit before reading the body', async () => {
    const { err, ms } = await refusal(newCache(), `${base}/big-declared`);
    expect(err.code).toBe('IMAGE_TOO_LARGE');
    expect(err.message).toContain(`declares ${100 * MiB} bytes (Content-Length), more than image_download_max_size_mb = 4`);
    expect(ms).toBeLessThan(LIMITS.idleTimeoutMs);
  });

  it('gives up a server that stalls after its headers after image_download_idle_timeout', async () => {
    const { err, ms } = await refusal(newCache(), `${base}/stall-body`);
    expect(err.code).toBe('IMAGE_DOWNLOAD_STALLED');
    expect(err.message).toContain(`The download of the image ${base}/stall-body stalled: no byte for 0.5 s (image_download_idle_timeout), after 0 bytes.`);
    expect(ms).toBeGreaterThanOrEqual(LIMITS.idleTimeoutMs - 50);
    expect(ms).toBeLessThan(LIMITS.idleTimeoutMs + 700);
  });

  it('gives up a server that never answers after image_download_idle_timeout', async () => {
    const { err, ms } = await refusal(newCache(), `${base}/stall-headers`);
    expect(err.code).toBe('IMAGE_DOWNLOAD_STALLED');
    expect(err.message).toContain('no byte for 0.5 s');
    expect(ms).toBeLessThan(LIMITS.idleTimeoutMs + 700);
  });

  it('ends a trickle of a byte at a time at image_download_timeout', async () => {
    const { err, ms } = await refusal(newCache(), `${base}/trickle`);
    expect(err.code).toBe('IMAGE_DOWNLOAD_TIMEOUT');
    expect(err.message).toContain(`The download of the image ${base}/trickle did not finish within image_download_timeout = 1.5 s.`);
    expect(ms).toBeGreaterThanOrEqual(LIMITS.timeoutMs - 50);
    expect(ms).toBeLessThan(LIMITS.timeoutMs + 700);
  });

  it('refuses a body shorter than its Content-Length', async () => {
    const { err } = await refusal(newCache(), `${rawBase}/short`);
    expect(err.code).toBe('IMAGE_DOWNLOAD_FAILED');
    expect(err.message).toContain(`The download of ${rawBase}/short was cut off`);
    expect(err.message).toContain(`of ${image.length} bytes`);
  });

  it('takes no more than Content-Length of a longer body', async () => {
    const cache = newCache();
    const got = await cache.fetch({ source: `${rawBase}/long`, checksum: `sha256:${imageSha}` });
    expect(statSync(got.path).size).toBe(image.length);
    expect(readdirSync(cache.baseDir).sort()).toEqual([imageSha, `${imageSha}.info.json`]);
  });

  it('names the HTTP status', async () => {
    const { err } = await refusal(newCache(), `${base}/missing.qcow2`);
    expect(err.code).toBe('IMAGE_DOWNLOAD_FAILED');
    expect(err.message).toBe(`The image ${base}/missing.qcow2 could not be downloaded: the server answered 404 Not Found. Check the URL.`);
  });

  it('says a refused connection in the one sentence of every connection failure, without its errno', async () => {
    const { err } = await refusal(newCache(), `http://127.0.0.1:${refusedPort}/x.qcow2`);
    expect(err.code).toBe('IMAGE_DOWNLOAD_FAILED');
    expect(err.message).toBe(
      `The image http://127.0.0.1:${refusedPort}/x.qcow2 could not be downloaded: no connection to 127.0.0.1 port ${refusedPort} could be made. Check the URL and that the server is reachable from this host.`,
    );
  });

  it('never shows a password from the URL or from a redirect', async () => {
    const withPassword = base.replace('//', '//alice:s3cret@');
    const { err } = await refusal(newCache(), `${withPassword}/missing.qcow2`);
    expect(err.message).toContain(`${base.replace('//', '//alice:***@')}/missing.qcow2`);
    expect(err.message).not.toContain('s3cret');
    const redirected = await refusal(newCache(), `${base}/to-secret`);
    expect(redirected.err.message).toContain(`${base.replace('//', '//bob:***@')}/missing`);
    expect(redirected.err.message).not.toContain('hunter2');
  });
});

describe('redirects', () => {
  it(`follows up to ${MAX_REDIRECTS}, relative ones included, and no more`, async () => {
    const got = await newCache().fetch({ source: `${base}/hop/${MAX_REDIRECTS}`, checksum: `sha256:${imageSha}` });
    expect(got.sha256).toBe(imageSha);
    const { err } = await refusal(newCache(), `${base}/hop/${MAX_REDIRECTS + 1}`);
    expect(err.code).toBe('IMAGE_REDIRECT_REFUSED');
    expect(err.message).toContain(`redirects more than ${MAX_REDIRECTS} times`);
  });

  it('refuses a redirect loop', async () => {
    const { err, ms } = await refusal(newCache(), `${base}/loop`);
    expect(err.code).toBe('IMAGE_REDIRECT_REFUSED');
    expect(err.message).toContain(`${base}/loop redirects more than ${MAX_REDIRECTS} times`);
    expect(ms).toBeLessThan(LIMITS.idleTimeoutMs);
  });

  it('refuses a redirect to file:', async () => {
    const { err } = await refusal(newCache(), `${base}/to-file`);
    expect(err.code).toBe('IMAGE_REDIRECT_REFUSED');
    expect(err.message).toBe(
      `The image download was refused: ${base}/to-file redirects to file:///etc/passwd, which is not an http or https URL. Give an http(s) URL that leads to the image by http(s) alone.`,
    );
  });
});

describe('the caller’s abort signal', () => {
  it('stops a download in the middle and keeps nothing', async () => {
    const controller = new AbortController();
    const cache = newCache({ limits: { ...LIMITS, idleTimeoutMs: 10_000, timeoutMs: 10_000, maxBytes: 1024 * MiB } });
    setTimeout(() => controller.abort(), 300);
    const { err, ms } = await refusal(cache, `${base}/slow-endless`, controller.signal);
    expect(err.code).toBe('IMAGE_DOWNLOAD_ABORTED');
    expect(err.message).toBe(`The download of the image ${base}/slow-endless was cancelled. Nothing of it was kept; start again when wanted.`);
    expect(ms).toBeLessThan(1000);
  });

  it('an aborted signal fetches nothing', async () => {
    const cache = newCache();
    const { err } = await refusal(cache, `${base}/good.qcow2`, AbortSignal.abort());
    expect(err.code).toBe('IMAGE_DOWNLOAD_ABORTED');
  });

  it('also stops the copy of an endless local file', async () => {
    const { err, ms } = await refusal(newCache(), '/dev/zero');
    expect(err.code).toBe('IMAGE_TOO_LARGE');
    expect(ms).toBeLessThan(LIMITS.timeoutMs);
  });
});

describe('modes of the cache', () => {
  it('keeps _base 0700 and cached images and sidecars 0600, whatever the source’s mode', async () => {
    const cache = newCache();
    // A _base an earlier version made world-readable is closed too.
    mkdirSync(cache.baseDir, { mode: 0o755 });
    chmodSync(cache.baseDir, 0o755);
    const open = path.join(work, 'open.raw');
    writeFileSync(open, Buffer.alloc(MiB, 1), { mode: 0o644 });
    chmodSync(open, 0o644);
    const got = await cache.fetch({ source: open });
    const secret = path.join(work, 'secret.raw');
    writeFileSync(secret, Buffer.alloc(MiB, 2), { mode: 0o600 });
    const got2 = await cache.fetch({ source: secret });
    const downloaded = await cache.fetch({ source: `${base}/good.qcow2`, checksum: `sha256:${imageSha}` });
    expect(statSync(cache.baseDir).mode & 0o777).toBe(0o700);
    for (const file of [got.path, got2.path, downloaded.path]) {
      expect(statSync(file).mode & 0o777, file).toBe(0o600);
      expect(statSync(`${file}.info.json`).mode & 0o777, file).toBe(0o600);
    }
  });

  it('opens folders to search only when QEMU runs as another user (qemu:///system)', async () => {
    expect(fileModesFor('qemu:///embed?root=/var/lib/novalet/libvirt')).toEqual(PRIVATE_MODES);
    expect(fileModesFor('qemu:///session')).toEqual(PRIVATE_MODES);
    expect(fileModesFor('qemu:///system')).toEqual(QEMU_USER_APART_MODES);
    const cache = newCache({ modes: QEMU_USER_APART_MODES });
    const got = await cache.fetch({ source: qcow2 });
    expect(statSync(cache.baseDir).mode & 0o777).toBe(0o711);
    expect(statSync(got.path).mode & 0o777).toBe(0o600);
  });
});

describe('the configuration', () => {
  it('gives the cache its limits, reserve and modes', () => {
    const config = parseConfigText(
      [
        '[DEFAULT]',
        'image_download_idle_timeout = 7',
        'image_download_timeout = 90',
        'image_download_max_size_mb = 2048',
        'image_download_min_rate = 4096',
        'image_download_min_rate_window = 30',
        'reserved_host_disk_mb = 100',
        '[libvirt]',
        'connection_uri = qemu:///system',
        '[import_filtering_opts]',
        'allowed_hosts = images.example, 10.0.0.5',
        'allowed_ports =',
        'disallowed_ports = 22',
        '',
      ].join('\n'),
      '/etc/novalet/novalet.conf',
    ).values;
    const cache = imageCacheFor(config, path.join(work, 'configured', '_base'));
    expect(cache.limits).toEqual({ idleTimeoutMs: 7000, timeoutMs: 90_000, maxBytes: 2048 * MiB, minRate: 4096, minRateWindowMs: 30_000 });
    expect(cache.urlRules).toEqual({ ...DEFAULT_IMAGE_URL_RULES, allowed_hosts: ['images.example', '10.0.0.5'], allowed_ports: [], disallowed_ports: [22] });
    expect(cache.modes).toEqual(QEMU_USER_APART_MODES);
    const unconfigured = imageCacheFor(parseConfigText('', '/etc/novalet/empty.conf').values, work);
    expect(unconfigured.modes).toEqual(PRIVATE_MODES);
    // glance's defaults, and the options' (1 KiB/s over 60 s).
    expect(unconfigured.urlRules).toEqual(DEFAULT_IMAGE_URL_RULES);
    expect(unconfigured.limits).toMatchObject({ minRate: 1024, minRateWindowMs: 60_000 });
  });

  it('refuses a download when the reserve leaves no room, before asking the server', async () => {
    const cache = newCache({ reservedHostDiskMb: 1024 * 1024 * 1024 });
    const { err, ms } = await refusal(cache, `${base}/stall-headers`);
    expect(err.code).toBe('IMAGE_NO_SPACE');
    expect(err.message).toContain('cannot be taken in: there is no room');
    expect(ms).toBeLessThan(LIMITS.idleTimeoutMs);
  });
});
