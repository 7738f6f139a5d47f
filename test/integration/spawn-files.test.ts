/**
 * What a spawn leaves on disk, on real libvirt (embedded QEMU driver), real
 * QEMU and real qemu-img: the instance folder and its files owner-only (the
 * embedded driver runs QEMU as novalet's own user, hypervisor/instance/file-modes.ts),
 * no URL password in the domain, and a spawn whose image download is
 * aborted through its signal leaves nothing at all.
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ComputeHost } from '../../hypervisor/compute-host.js';
import { validateInstanceSpec } from '../../hypervisor/instance/spec.js';
import { testGuestCmdline, testGuestFiles } from '../../hypervisor/virt-type/test-guest.js';
import { TEST_GUEST_DIR } from '../guest/test-guest.js';
import { testComputeHost, testConfig } from './launch-support.js';

const guest = testGuestFiles(TEST_GUEST_DIR);
// The image server is on 127.0.0.1, which image downloads reach only when allowed_hosts names it.
const { config, stateDir } = testConfig('[import_filtering_opts]\nallowed_hosts = 127.0.0.1\nallowed_ports =');
let host: ComputeHost;
let server: Server;
let base: string;
const sockets = new Set<Socket>();
const spawned: string[] = [];
let diskSha: string;

beforeAll(async () => {
  host = await testComputeHost(config, 'recorded');
  const disk = readFileSync(guest.disk);
  diskSha = createHash('sha256').update(disk).digest('hex');
  const served: Record<string, Buffer> = { '/disk.qcow2': disk, '/vmlinuz': readFileSync(guest.kernel), '/initramfs': readFileSync(guest.initramfs) };
  server = createServer((req, res) => {
    const body = served[req.url ?? ''];
    if (body) {
      res.writeHead(200, { 'content-length': body.length });
      res.end(body);
    } else {
      // Headers, then nothing: a download that only the caller's signal ends here.
      res.writeHead(200, { 'content-length': disk.length });
      res.flushHeaders();
    }
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}, 180_000);

afterAll(async () => {
  for (const uuid of spawned) await host.driver.destroy(uuid).catch(() => undefined);
  for (const s of sockets) s.destroy();
  await new Promise((resolve) => server?.close(resolve));
  await host?.close();
  rmSync(stateDir, { recursive: true, force: true });
});

const mode = (file: string): number => statSync(file).mode & 0o777;

describe('the files of a spawned instance', () => {
  it('are owner-only, image and overlay alike, and the domain holds no URL password', async () => {
    const source = `${base.replace('//', '//alice:s3cret@')}/disk.qcow2`;
    const spec = validateInstanceSpec({ name: 'files-1', vcpus: 1, memoryMiB: 128, image: { source, checksum: `sha256:${diskSha}` }, virtType: 'qemu' });
    const launched = await host.driver.spawn(spec);
    spawned.push(spec.uuid);
    expect(mode(launched.instanceDir)).toBe(0o700);
    expect(mode(path.join(launched.instanceDir, 'disk'))).toBe(0o600);
    expect(mode(path.dirname(launched.image!.path))).toBe(0o700);
    expect(mode(launched.image!.path)).toBe(0o600);
    const domain = await host.connection.lookupByUuid(spec.uuid);
    const xml = await domain!.getXmlDesc();
    await domain!.free();
    expect(xml).not.toContain('s3cret');
    expect(xml).toContain(`${base.replace('//', '//alice:***@')}/disk.qcow2`);
  });

  it('copies kernel and ramdisk owner-only, whatever their own modes', async () => {
    expect(mode(guest.kernel) & 0o044).not.toBe(0);
    const spec = validateInstanceSpec({ name: 'files-2', vcpus: 1, memoryMiB: 128, kernel: guest.kernel, ramdisk: guest.initramfs, cmdline: testGuestCmdline('files-2'), virtType: 'qemu' });
    const launched = await host.driver.spawn(spec);
    spawned.push(spec.uuid);
    expect(mode(path.join(launched.instanceDir, 'kernel'))).toBe(0o600);
    expect(mode(path.join(launched.instanceDir, 'ramdisk'))).toBe(0o600);
  });
});

describe('a kernel boot from URLs', () => {
  it('fetches kernel and ramdisk through the image cache by their checksums, and the guest boots from the copies', async () => {
    const sha = (file: string) => `sha256:${createHash('sha256').update(readFileSync(file)).digest('hex')}`;
    const spec = validateInstanceSpec({
      name: 'url-kernel',
      vcpus: 1,
      memoryMiB: 128,
      kernel: `${base}/vmlinuz`,
      kernelChecksum: sha(guest.kernel),
      ramdisk: `${base}/initramfs`,
      ramdiskChecksum: sha(guest.initramfs),
      cmdline: testGuestCmdline('url-kernel'),
      virtType: 'qemu',
    });
    const launched = await host.driver.spawn(spec);
    spawned.push(spec.uuid);
    expect(readFileSync(path.join(launched.instanceDir, 'kernel')).equals(readFileSync(guest.kernel))).toBe(true);
    expect(readFileSync(path.join(launched.instanceDir, 'ramdisk')).equals(readFileSync(guest.initramfs))).toBe(true);
    const cached = readdirSync(path.join(stateDir, 'instances', '_base'));
    expect(cached).toEqual(expect.arrayContaining([sha(guest.kernel).slice(7), sha(guest.initramfs).slice(7)].map((h) => expect.stringContaining(h))));
  });

  it('a kernel URL without its checksum is refused before anything is fetched', () => {
    expect(() => validateInstanceSpec({ name: 'no-sum', vcpus: 1, memoryMiB: 128, kernel: `${base}/vmlinuz` })).toThrow(/kernel URL .* has no checksum/);
  });
});

describe('a spawn aborted through its signal', () => {
  it('stops the image download and leaves no domain, no instance folder and no partial image', async () => {
    const spec = validateInstanceSpec({ name: 'aborted', vcpus: 1, memoryMiB: 128, image: { source: `${base}/stalls.qcow2`, checksum: `sha256:${'1'.repeat(64)}` }, virtType: 'qemu' });
    // A checksum nothing in the cache has, so that the download is needed; destroyed afterwards should it succeed after all.
    spawned.push(spec.uuid);
    const controller = new AbortController();
    const reason = new Error('aborted by the test');
    setTimeout(() => controller.abort(reason), 300);
    const started = Date.now();
    // The spawn rejects with the signal's own reason (a delete's, a stop's), whatever phase it was in.
    await expect(host.driver.spawn(spec, { signal: controller.signal })).rejects.toBe(reason);
    expect(Date.now() - started).toBeLessThan(5000);
    expect(existsSync(host.driver.instanceDir(spec.uuid))).toBe(false);
    expect(await host.connection.lookupByUuid(spec.uuid)).toBeNull();
    const cacheDir = path.join(stateDir, 'instances', '_base');
    expect(readdirSync(cacheDir).filter((n) => n.startsWith('.partial-'))).toEqual([]);
  });
});
