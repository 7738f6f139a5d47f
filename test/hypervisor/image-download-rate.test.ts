import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ImageError } from '../../hypervisor/instance/image-error.js';
import { transferInto, type DownloadLimits, type Transferred } from '../../hypervisor/instance/image-download.js';
import { DEFAULT_IMAGE_URL_RULES } from '../../hypervisor/instance/image-url-rules.js';

/**
 * image_download_min_rate over image_download_min_rate_window, against a
 * real server on 127.0.0.1 that trickles: time is the behaviour here, so
 * the window is small (2 s) and the bounds wide.
 */

const work = mkdtempSync(path.join(tmpdir(), 'novalet-rate-'));
const WINDOW_MS = 2000;
/** The idle timeout never fires on a byte every 400 ms, nor the deadline within these tests. */
const LIMITS: DownloadLimits = { idleTimeoutMs: 5000, timeoutMs: 60_000, maxBytes: 64 * 1024 * 1024, minRate: 1024, minRateWindowMs: WINDOW_MS };
const RULES = { ...DEFAULT_IMAGE_URL_RULES, allowed_hosts: ['127.0.0.1'], allowed_ports: [] };

let server: Server;
let base: string;
const responses = new Set<ServerResponse>();
const timers = new Set<NodeJS.Timeout>();

/** Writes `chunk` every `ms` until `count` chunks are sent (then ends) or the client goes. */
function drip(res: ServerResponse, chunk: Buffer, ms: number, count: number): void {
  let sent = 0;
  const timer = setInterval(() => {
    if (res.destroyed) {
      clearInterval(timer);
      return;
    }
    res.write(chunk);
    if (++sent === count) {
      clearInterval(timer);
      res.end();
    }
  }, ms);
  timers.add(timer);
}

const steady = Buffer.alloc(4096, 0x33);

beforeAll(async () => {
  server = createServer((req, res) => {
    responses.add(res);
    res.on('close', () => responses.delete(res));
    res.writeHead(200);
    if (req.url === '/byte-every-400ms') drip(res, Buffer.from('x'), 400, 1_000_000);
    // 4 KiB every 200 ms (20 KiB/s) for 3 s: slower than a loopback copy, well above 1 KiB/s, longer than a window.
    else if (req.url === '/steady') drip(res, steady, 200, 15);
    else res.end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  for (const timer of timers) clearInterval(timer);
  for (const res of responses) res.destroy();
  await new Promise((resolve) => server.close(resolve));
  rmSync(work, { recursive: true, force: true });
});

let files = 0;

async function download(url: string, limits: DownloadLimits): Promise<{ result: Transferred | ImageError; ms: number }> {
  const file = path.join(work, `image-${files++}`);
  const started = Date.now();
  const result = await transferInto(url, file, { limits, space: { bytes: 1024 * 1024 * 1024, dir: work, reservedMb: 0 }, fileMode: 0o600, urlRules: RULES }).catch((err: unknown) => err as ImageError);
  if (result instanceof Error) expect(existsSync(file), 'nothing of a failed download is kept').toBe(false);
  return { result, ms: Date.now() - started };
}

describe('image_download_min_rate', () => {
  it('gives up a server that trickles a byte at a time once a window has passed below the rate', async () => {
    const { result, ms } = await download(`${base}/byte-every-400ms`, LIMITS);
    expect(result).toBeInstanceOf(ImageError);
    const err = result as ImageError;
    expect(err.code).toBe('IMAGE_DOWNLOAD_TOO_SLOW');
    expect(err.message).toMatch(
      new RegExp(
        `^The download of the image ${base}/byte-every-400ms was given up: \\d+ bytes in the last [\\d.]+ s, less than image_download_min_rate = 1024 bytes/s averaged over image_download_min_rate_window = 2 s\\. ` +
          'Use a faster or closer server, or lower \\[DEFAULT\\] image_download_min_rate \\(0 turns the check off\\) or raise image_download_min_rate_window; nothing of it was kept\\.$',
      ),
    );
    // Not before a whole window; and long before the idle timeout or the deadline would have ended it.
    expect(ms).toBeGreaterThanOrEqual(WINDOW_MS - 50);
    expect(ms).toBeLessThan(LIMITS.timeoutMs / 2);
  });

  it('lets a download that keeps above the rate run longer than a window', async () => {
    const { result, ms } = await download(`${base}/steady`, LIMITS);
    const expected = Buffer.concat(Array.from({ length: 15 }, () => steady));
    expect(result).toEqual({ sha256: createHash('sha256').update(expected).digest('hex'), bytes: expected.length });
    expect(ms).toBeGreaterThan(WINDOW_MS);
  });

  it('0 turns the check off: the trickle then runs on until the deadline', async () => {
    const { result, ms } = await download(`${base}/byte-every-400ms`, { ...LIMITS, minRate: 0, timeoutMs: 2 * WINDOW_MS });
    expect((result as ImageError).code).toBe('IMAGE_DOWNLOAD_TIMEOUT');
    expect(ms).toBeGreaterThanOrEqual(2 * WINDOW_MS - 50);
  });
});
