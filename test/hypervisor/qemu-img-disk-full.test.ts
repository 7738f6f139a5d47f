/**
 * qemu-img on a full file system (a real tmpfs): the overlay it cannot
 * write is DISK_FULL naming the folder, not QEMU_IMG_FAILED's "check that
 * qemu-utils is installed".
 */
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createOverlay } from '../../hypervisor/instance/qemu-img.js';
import { testGuestFiles } from '../../hypervisor/virt-type/test-guest.js';
import { buildTestGuest, TEST_GUEST_DIR } from '../guest/test-guest.js';
import { mountSmallFileSystem, type SmallFileSystem } from '../support/small-filesystem.js';

const mounts: SmallFileSystem[] = [];
afterEach(() => {
  for (const m of mounts.splice(0)) m.unmount();
});

describe('createOverlay on a full disk', () => {
  it('is DISK_FULL naming the folder, with the remedy', async () => {
    buildTestGuest();
    const { disk } = testGuestFiles(TEST_GUEST_DIR);
    const fs = mountSmallFileSystem(256);
    mounts.push(fs);
    fs.fill();
    const overlay = path.join(fs.dir, 'disk.qcow2');
    await expect(createOverlay(disk, 'qcow2', overlay)).rejects.toMatchObject({ code: 'DISK_FULL', message: expect.stringContaining(`The file system holding ${fs.dir} is full`) });
  });
});
