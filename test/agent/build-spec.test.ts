/** A build's image as the driver's spec: by URL with its checksum, or a file of [compute] image_dir by name — never anything else. */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { instanceSpecOf } from '../../agent/build-spec.js';
import type { BuildBody, WireImage } from '../../messaging/contracts/compute-requests.js';

const dir = mkdtempSync(path.join(tmpdir(), 'nvl-images-'));
writeFileSync(path.join(dir, 'cirros.qcow2'), 'disk');
writeFileSync(path.join(dir, 'vmlinuz'), 'kernel');
mkdirSync(path.join(dir, 'a-folder'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const SUM = `sha256:${'a'.repeat(64)}`;
const body = (image: Partial<WireImage>): BuildBody => ({
  instance: { uuid: '0b6c8f3e-2a4d-4c1e-9f00-123456789abc', name: 'web-1', flavor: { name: 'm1', vcpus: 2, memory_mb: 512, root_gb: 1, extra_specs: {} }, image: { properties: { hw_machine_type: 'q35' }, ...image } },
});

describe('instanceSpecOf', () => {
  it('takes a disk by URL with its checksum, the flavor and the image properties', async () => {
    const spec = await instanceSpecOf(body({ url: 'http://images.example/cirros.qcow2', checksum: SUM }), dir);
    expect(spec).toMatchObject({ uuid: '0b6c8f3e-2a4d-4c1e-9f00-123456789abc', name: 'web-1', vcpus: 2, memoryMiB: 512, image: { source: 'http://images.example/cirros.qcow2', checksum: SUM }, imageProperties: { hw_machine_type: 'q35' } });
  });

  it('takes a disk or kernel by name from the image folder, and a kernel by URL with its checksum', async () => {
    expect((await instanceSpecOf(body({ name: 'cirros.qcow2' }), dir)).image?.source).toBe(path.join(dir, 'cirros.qcow2'));
    const kernel = await instanceSpecOf(body({ kernel: { name: 'vmlinuz' }, ramdisk: { url: 'https://x/initrd', checksum: SUM }, cmdline: 'console=ttyS0' }), dir);
    expect(kernel).toMatchObject({ kernel: path.join(dir, 'vmlinuz'), ramdisk: 'https://x/initrd', ramdiskChecksum: SUM, cmdline: 'console=ttyS0' });
  });

  it('refuses a name that is not a regular file of the folder, saying which field', async () => {
    await expect(instanceSpecOf(body({ name: 'missing.qcow2' }), dir)).rejects.toMatchObject({ code: 'IMAGE_NOT_IN_IMAGE_DIR', message: expect.stringContaining('body.instance.image.name') });
    await expect(instanceSpecOf(body({ name: 'a-folder' }), dir)).rejects.toMatchObject({ code: 'IMAGE_NOT_IN_IMAGE_DIR' });
    // The validator refuses paths; should one slip through, the join is checked too.
    await expect(instanceSpecOf(body({ kernel: { name: '../../etc/passwd' } }), dir)).rejects.toMatchObject({ code: 'IMAGE_NOT_IN_IMAGE_DIR', message: expect.stringContaining('kernel.name') });
  });
});
