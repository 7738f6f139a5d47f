import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import type { LookupAddress } from 'node:dns';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { createServer as createNetServer, type AddressInfo, type Server as NetServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ImageError } from '../../hypervisor/instance/image-error.js';
import { transferInto, type DownloadLimits, type Transferred } from '../../hypervisor/instance/image-download.js';
import { DEFAULT_IMAGE_URL_RULES, SYSTEM_ADDRESSES, type AddressEnvironment, type ImageUrlRules } from '../../hypervisor/instance/image-url-rules.js';

/**
 * The image URL rules on real downloads, all on loopback: a server on
 * 127.0.0.1 is refused until allowed_hosts names it, a redirect to another
 * loopback address is refused before anything connects to it (a listener
 * there counts connections), a connection goes only to the address checked,
 * and connection failures read the same whatever their cause. Refusals of
 * other addresses are tested on the rule itself (image-url-rules.test.ts).
 */

const work = mkdtempSync(path.join(tmpdir(), 'novalet-url-rules-'));
const image = Buffer.alloc(256 * 1024, 0x5a);
const imageSha = createHash('sha256').update(image).digest('hex');
const LIMITS: DownloadLimits = { idleTimeoutMs: 1500, timeoutMs: 20_000, maxBytes: 64 * 1024 * 1024, minRate: 0, minRateWindowMs: 60_000 };
const LOOPBACK: ImageUrlRules = { ...DEFAULT_IMAGE_URL_RULES, allowed_hosts: ['127.0.0.1'], allowed_ports: [] };

let server: Server;
let port: number;
let serverConnections = 0;
/** Listeners on other loopback addresses, which the rules must keep downloads from. */
const others = new Map<string, { server: NetServer; port: number; connections: number }>();
let closedPort: number;
/** A port whose listen queue is full: connections to it hang, as to a filtered port. */
let filteredPort: number;
let filtering: ChildProcess;

async function listenOn(address: string): Promise<void> {
  const entry = { server: createNetServer((socket) => socket.destroy()), port: 0, connections: 0 };
  entry.server.on('connection', () => entry.connections++);
  await new Promise<void>((resolve) => entry.server.listen(0, address, resolve));
  entry.port = (entry.server.address() as AddressInfo).port;
  others.set(address, entry);
}

beforeAll(async () => {
  server = createServer((req, res) => {
    if (req.url === '/image') {
      res.writeHead(200, { 'content-length': image.length });
      res.end(image);
    } else if (req.url === '/to-other-loopback') {
      res.writeHead(302, { location: `http://127.0.0.2:${others.get('127.0.0.2')!.port}/image` });
      res.end();
    } else if (req.url === '/to-localhost') {
      res.writeHead(301, { location: `http://localhost:${others.get('127.0.0.2')!.port}/image` });
      res.end();
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  server.on('connection', () => serverConnections++);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
  await listenOn('127.0.0.2');
  await listenOn('127.0.0.3');
  const probe = createNetServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  closedPort = (probe.address() as AddressInfo).port;
  await new Promise((resolve) => probe.close(resolve));
  // listen(0) and two connections never accepted fill the queue; Linux then drops further SYNs. The
  // script ends when its stdin closes, so it cannot outlive this process.
  const script = [
    'import socket, sys, time',
    "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(0)",
    'held = []',
    'for _ in range(2):',
    '    c = socket.socket(); c.setblocking(False)',
    '    try: c.connect(s.getsockname())',
    '    except BlockingIOError: pass',
    '    held.append(c)',
    'time.sleep(0.3)',
    'print(s.getsockname()[1], flush=True)',
    'sys.stdin.read()',
  ].join('\n');
  filtering = spawn('python3', ['-c', script], { stdio: ['pipe', 'pipe', 'inherit'] });
  const [line] = await new Promise<string[]>((resolve) => createInterface({ input: filtering.stdout! }).once('line', (l) => resolve([l])));
  filteredPort = Number(line);
});

afterAll(async () => {
  filtering?.kill('SIGKILL');
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
  for (const { server: other } of others.values()) await new Promise((resolve) => other.close(resolve));
  rmSync(work, { recursive: true, force: true });
});

let files = 0;

/** A download into a new file; on failure the file must be gone. */
async function download(url: string, rules: ImageUrlRules, extra: { addresses?: AddressEnvironment; log?: { debug(fields: object, message: string): void } } = {}): Promise<Transferred | ImageError> {
  const file = path.join(work, `image-${files++}`);
  const result = await transferInto(url, file, { limits: LIMITS, space: { bytes: 1024 * 1024 * 1024, dir: work, reservedMb: 0 }, fileMode: 0o600, urlRules: rules, ...extra }).catch((err: unknown) => err);
  if (result instanceof Error) {
    expect(result).toBeInstanceOf(ImageError);
    expect(existsSync(file)).toBe(false);
    return result as ImageError;
  }
  return result as Transferred;
}

async function refusal(url: string, rules: ImageUrlRules, extra: Parameters<typeof download>[2] = {}): Promise<ImageError> {
  const result = await download(url, rules, extra);
  expect(result).toBeInstanceOf(ImageError);
  return result as ImageError;
}

describe('a loopback image server', () => {
  it('is refused with the default rules, before anything connects to it', async () => {
    const before = serverConnections;
    const byPort = await refusal(`http://127.0.0.1:${port}/image`, DEFAULT_IMAGE_URL_RULES);
    expect(byPort.code).toBe('IMAGE_URL_REFUSED');
    expect(byPort.message).toContain(`its port ${port} is not in allowed_ports (80, 443)`);
    const byAddress = await refusal(`http://127.0.0.1:${port}/image`, { ...DEFAULT_IMAGE_URL_RULES, allowed_ports: [] });
    expect(byAddress.message).toBe(
      `The image URL http://127.0.0.1:${port}/image is refused: its host 127.0.0.1 is a loopback address, which image downloads never reach unless [import_filtering_opts] allowed_hosts names the host. Give the URL of an image server elsewhere.`,
    );
    const byName = await refusal(`http://localhost:${port}/image`, { ...DEFAULT_IMAGE_URL_RULES, allowed_ports: [] });
    expect(byName.message).toContain('its host localhost resolves to a loopback address');
    expect(serverConnections).toBe(before);
  });

  it('is reached once allowed_hosts names 127.0.0.1 and allowed_ports is empty', async () => {
    const got = await download(`http://127.0.0.1:${port}/image`, LOOPBACK);
    expect(got).toEqual({ sha256: imageSha, bytes: image.length });
  });

  it('a refusal reads the same whether something listens on the port or not', async () => {
    const rules = { ...DEFAULT_IMAGE_URL_RULES, allowed_ports: [] };
    const before = serverConnections;
    const open = await refusal(`http://127.0.0.1:${port}/v1/host`, rules);
    const closed = await refusal(`http://127.0.0.1:${closedPort}/v1/host`, rules);
    expect(open.code).toBe(closed.code);
    expect(open.message.replace(String(port), 'PORT')).toBe(closed.message.replace(String(closedPort), 'PORT'));
    expect(serverConnections).toBe(before);
  });
});

describe('a redirect', () => {
  it('to a loopback address allowed_hosts does not name is refused without connecting to it', async () => {
    const other = others.get('127.0.0.2')!;
    const err = await refusal(`http://127.0.0.1:${port}/to-other-loopback`, LOOPBACK);
    expect(err.code).toBe('IMAGE_URL_REFUSED');
    expect(err.message).toBe(
      `The image URL http://127.0.0.1:${port}/to-other-loopback redirects to http://127.0.0.2:${other.port}/image, which is refused by [import_filtering_opts]: its host 127.0.0.2 is not in allowed_hosts. Give a URL those rules allow, or change [import_filtering_opts] in the configuration.`,
    );
    const byName = await refusal(`http://127.0.0.1:${port}/to-localhost`, LOOPBACK);
    expect(byName.message).toContain(`redirects to http://localhost:${other.port}/image, which is refused by [import_filtering_opts]: its host localhost is not in allowed_hosts.`);
    expect(other.connections).toBe(0);
  });
});

describe('the connection', () => {
  it('goes to the address the check resolved, and DNS is asked once', async () => {
    // images.test resolves to 127.0.0.1 once, then to 127.0.0.3: a rebinding name. Only the injected resolver knows it.
    const answers: LookupAddress[][] = [[{ address: '127.0.0.1', family: 4 }]];
    const asked: string[] = [];
    const rebinding: AddressEnvironment = {
      resolve: async (host) => {
        asked.push(host);
        return answers.shift() ?? [{ address: '127.0.0.3', family: 4 }];
      },
      ownAddresses: SYSTEM_ADDRESSES.ownAddresses,
    };
    const before = serverConnections;
    const got = await download(`http://images.test:${port}/image`, { ...DEFAULT_IMAGE_URL_RULES, allowed_hosts: ['images.test'], allowed_ports: [] }, { addresses: rebinding });
    expect(got).toEqual({ sha256: imageSha, bytes: image.length });
    expect(asked).toEqual(['images.test']);
    expect(serverConnections).toBe(before + 1);
    expect(others.get('127.0.0.3')!.connections).toBe(0);
  });

  it('that fails reads the same whether the port is closed or filtered, its errno only in the debug log', async () => {
    const debug: object[] = [];
    const log = { debug: (fields: object) => debug.push(fields) };
    const closed = await refusal(`http://127.0.0.1:${closedPort}/image`, LOOPBACK, { log });
    const started = Date.now();
    const filtered = await refusal(`http://127.0.0.1:${filteredPort}/image`, LOOPBACK, { log });
    // The filtered port answers nothing: the idle timeout ends the attempt, in the same words.
    expect(Date.now() - started).toBeGreaterThanOrEqual(LIMITS.idleTimeoutMs - 50);
    for (const err of [closed, filtered]) {
      expect(err.code).toBe('IMAGE_DOWNLOAD_FAILED');
      expect(err.message).not.toMatch(/ECONNREFUSED|ETIMEDOUT|refused|timed out|stalled|idle/);
    }
    expect(closed.message).toBe(
      `The image http://127.0.0.1:${closedPort}/image could not be downloaded: no connection to 127.0.0.1 port ${closedPort} could be made. Check the URL and that the server is reachable from this host.`,
    );
    expect(filtered.message.replaceAll(String(filteredPort), 'PORT')).toBe(closed.message.replaceAll(String(closedPort), 'PORT'));
    expect(debug).toContainEqual(expect.objectContaining({ code: 'ECONNREFUSED' }));
  });
});
