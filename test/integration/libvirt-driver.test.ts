/**
 * The libvirt ComputeDriver held to the interface's contract, on real
 * libvirt (embedded QEMU driver through koffi) and real QEMU, with the test
 * guest under TCG (which every host has), assembled as the service does;
 * then what only the libvirt driver can show: a spawn aborted just as
 * libvirt defines its domain leaves no domain, no QEMU and no folder.
 */
import { existsSync, readdirSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { validateInstanceSpec, type ValidInstanceSpec } from '../../hypervisor/compute-driver.js';
import type { ComputeHost } from '../../hypervisor/compute-host.js';
import { testGuestCmdline, testGuestFiles } from '../../hypervisor/virt-type/test-guest.js';
import { TEST_GUEST_DIR } from '../guest/test-guest.js';
import { computeDriverContract } from '../hypervisor/compute-driver-contract.js';
import { processesMentioning } from '../libvirt/libvirt-test-support.js';
import { testComputeHost, testConfig } from './launch-support.js';

const guest = testGuestFiles(TEST_GUEST_DIR);

/** A loopback image server for the image-URL rules (glance's [import_filtering_opts]): loopback and its port allowed. */
const LOOPBACK_IMAGES = ['[import_filtering_opts]', 'allowed_hosts = 127.0.0.1', 'allowed_ports ='].join('\n');

function kernelSpec(name: string, options: { ignoresAcpi?: boolean } = {}): ValidInstanceSpec {
  return validateInstanceSpec({ name, vcpus: 1, memoryMiB: 256, kernel: guest.kernel, ramdisk: guest.initramfs, cmdline: testGuestCmdline(name, { ignoreAcpi: options.ignoresAcpi }), virtType: 'qemu' });
}

/**
 * An image server on loopback that answers with headers and then a byte
 * every 100 ms, for ever: only an abort ends a download from it. `requested`
 * settles at the first byte sent for `file`.
 */
async function dribblingServer(): Promise<{ server: Server; url: (file: string) => string; requested: (file: string) => Promise<void> }> {
  const waiting = new Map<string, () => void>();
  const arrived = new Set<string>();
  const server = createServer((request, response) => {
    response.writeHead(200, { 'content-type': 'application/octet-stream' });
    const file = request.url ?? '';
    const timer = setInterval(() => {
      response.write('x');
      arrived.add(file);
      waiting.get(file)?.();
    }, 100);
    response.on('close', () => clearInterval(timer));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    server,
    url: (file) => `http://127.0.0.1:${port}/${file}`,
    requested: (file) => (arrived.has(`/${file}`) ? Promise.resolve() : new Promise<void>((resolve) => waiting.set(`/${file}`, resolve))),
  };
}

async function closeServer(server: Server | undefined): Promise<void> {
  if (!server) return;
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
}

/** What of an instance is left beside libvirt's answers: its folder, a domain definition, partial images. */
async function leftoversOf(host: ComputeHost, uuid: string): Promise<string[]> {
  const left: string[] = [];
  const dir = host.driver.instanceDir(uuid);
  if (existsSync(dir)) left.push(`folder ${dir}`);
  const domain = await host.connection.lookupByUuid(uuid);
  if (domain) {
    left.push(`domain ${domain.name}`);
    await domain.free();
  }
  const base = path.join(host.config.DEFAULT.instances_path, '_base');
  if (existsSync(base)) left.push(...readdirSync(base).map((name) => `image cache entry ${name}`));
  left.push(...(await processesMentioning(`guest=novalet-${uuid},`)).map((line) => `QEMU ${line}`));
  return left;
}

let images: Awaited<ReturnType<typeof dribblingServer>> | undefined;

computeDriverContract('the libvirt driver', async () => {
  const { config } = testConfig(LOOPBACK_IMAGES);
  const host = await testComputeHost(config, 'recorded');
  images = await dribblingServer();
  const server = images;
  return {
    driver: host.driver,
    spec: kernelSpec,
    guestPowersOff: async (uuid) => {
      // The ACPI power button pressed behind the driver's back; the booted test guest powers itself off.
      const domain = await host.connection.lookupByUuid(uuid);
      await domain!.shutdown();
      await domain!.free();
    },
    stallingSpawn: (name) => {
      const file = `${name}.qcow2`;
      const spec = validateInstanceSpec({ name, vcpus: 1, memoryMiB: 256, image: { source: server.url(file), checksum: `sha256:${'0'.repeat(64)}` }, virtType: 'qemu' });
      return { spec, stalled: server.requested(file) };
    },
    leftovers: (uuid) => leftoversOf(host, uuid),
    bootMs: 90_000,
    teardown: async () => {
      await closeServer(images?.server);
      await host.close();
    },
  };
});

describe('the libvirt driver: a spawn aborted as libvirt defines its domain', () => {
  let host: ComputeHost;

  beforeAll(async () => {
    host = await testComputeHost(testConfig().config, 'recorded');
  }, 180_000);

  afterAll(async () => {
    await host?.close();
  });

  it('rejects with the reason and leaves no domain, no QEMU and no folder', async () => {
    const spec = kernelSpec('aborted-at-define');
    const controller = new AbortController();
    const reason = new Error('the instance was deleted during the build');
    const seen: string[] = [];
    const subscription = host.connection.onLifecycleEvent((event) => {
      if (event.uuid !== spec.uuid) return;
      seen.push(event.event);
      // libvirt reports the definition while the start is still ahead or under way.
      if (event.event === 'defined') controller.abort(reason);
    });
    await subscription.ready;
    try {
      const outcome = await host.driver.spawn(spec, { signal: controller.signal }).then(
        () => 'resolved',
        (err: unknown) => err,
      );
      expect(outcome).toBe(reason);
      expect(seen[0]).toBe('defined');
      expect(await leftoversOf(host, spec.uuid)).toEqual([]);
      expect((await host.driver.list()).map((i) => i.uuid)).not.toContain(spec.uuid);
    } finally {
      subscription();
      await host.driver.destroy(spec.uuid);
    }
  }, 120_000);
});
