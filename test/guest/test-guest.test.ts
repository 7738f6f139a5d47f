import { createHash } from 'node:crypto';
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  BUILDER,
  buildTestGuest,
  DISK_PREFIX,
  INIT_SOURCE,
  killAllQemu,
  parseReadyMarker,
  POWEROFF_LINE,
  qmp,
  QemuRun,
  READY_PREFIX,
  readManifest,
  TEST_GUEST_DIR,
  type TestGuestManifest,
} from './test-guest.js';

/**
 * The test guest, built for real from Debian packages, booted for real under
 * qemu-system-x86_64 -accel tcg. Every QEMU is killed after each test.
 */

const BOOT_MS = 60_000;
const dir = TEST_GUEST_DIR;
const file = (name: string): string => path.join(dir, name);
const sha256 = (p: string): string => createHash('sha256').update(readFileSync(p)).digest('hex');

let manifest: TestGuestManifest;
let scratch: string;

beforeAll(() => {
  const first = buildTestGuest(dir);
  expect(first.status, first.stderr).toBe(0);
  manifest = readManifest(dir);
  scratch = mkdtempSync(path.join(os.tmpdir(), 'novalet-guest-test-'));
}, 600_000);

afterEach(async () => {
  await killAllQemu();
});

afterAll(async () => {
  await killAllQemu();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

async function bootDirect(append: string, extra: string[] = []): Promise<QemuRun> {
  return new QemuRun(['-kernel', file('vmlinuz'), '-initrd', file('initramfs.cpio.gz'), '-append', append, ...extra]);
}

describe('deploy/build-test-guest.sh', () => {
  it('builds vmlinuz, initramfs.cpio.gz, disk.qcow2 and a manifest whose sha256 sums match', () => {
    // Debian 12 names it linux-image-6.1.0-57-cloud-amd64, Debian 13 linux-image-6.12.118+deb13-cloud-amd64.
    expect(manifest.kernelPackage).toMatch(/^linux-image-\d+\.\d+\.\d+(-\d+|\+deb\d+)-cloud-amd64$/);
    expect(manifest.kernelPackageVersion).toMatch(/^\d+\.\d+/);
    expect(manifest.kernelRelease).toBe(manifest.kernelPackage.replace(/^linux-image-/, ''));
    expect(Object.keys(manifest.files).sort()).toEqual(['disk.qcow2', 'initramfs.cpio.gz', 'vmlinuz']);
    for (const [name, { sha256: sum, size }] of Object.entries(manifest.files)) {
      expect(sha256(file(name)), name).toBe(sum);
      expect(statSync(file(name)).size, name).toBe(size);
    }
    // builderHash: sha256 over sha256sum's lines for the builder and deploy/test-guest/*.
    const deploy = path.dirname(BUILDER);
    const sources = ['build-test-guest.sh', ...readdirSync(path.dirname(INIT_SOURCE)).map((n) => `test-guest/${n}`).sort()];
    const lines = sources.map((n) => `${sha256(path.join(deploy, n))}  ${n}\n`).join('');
    expect(manifest.builderHash).toBe(createHash('sha256').update(lines).digest('hex'));
    // Modules come with their dependencies, each after what it needs. Debian 12's cloud kernel has the
    // virtio core and virtio_pci as modules, Debian 13's builds them in: their order is checked where they are modules.
    const mods = manifest.modules.map((m) => path.basename(m, '.ko'));
    for (const m of ['virtio_blk', 'button', 'evdev']) expect(mods).toContain(m);
    const before = (needed: string, by: string) => {
      if (mods.includes(needed)) expect(mods.indexOf(needed), `${needed} before ${by}`).toBeLessThan(mods.indexOf(by));
    };
    before('virtio', 'virtio_blk');
    before('virtio_ring', 'virtio_blk');
    if (mods.includes('virtio_pci')) before('virtio_pci_modern_dev', 'virtio_pci');
    // A qcow2 image (magic QFI\xfb) and a gzip initramfs.
    expect(readFileSync(file('disk.qcow2')).subarray(0, 4)).toEqual(Buffer.from([0x51, 0x46, 0x49, 0xfb]));
    expect(readFileSync(file('initramfs.cpio.gz')).subarray(0, 2)).toEqual(Buffer.from([0x1f, 0x8b]));
  });

  it('does nothing, quickly, when OUTDIR already holds this build', () => {
    const before = statSync(file('manifest.json'));
    const again = buildTestGuest(dir);
    expect(again.status, again.stderr).toBe(0);
    expect(again.stderr).toContain('up to date');
    expect(again.stderr).not.toContain('building');
    expect(again.ms).toBeLessThan(15_000);
    const after = statSync(file('manifest.json'));
    expect(after.mtimeMs).toBe(before.mtimeMs);
    expect(after.ino).toBe(before.ino);
  });

  it('rebuilds a stale OUTDIR (other builderHash) whole, atomically, leaving no temporary folders', () => {
    const parent = mkdtempSync(path.join(scratch, 'stale-'));
    const stale = path.join(parent, 'guest');
    cpSync(dir, stale, { recursive: true });
    const m = readManifest(stale);
    writeFileSync(path.join(stale, 'manifest.json'), JSON.stringify({ ...m, builderHash: '0'.repeat(64) }, null, 2));
    writeFileSync(path.join(stale, 'leftover-from-old-build'), 'x');
    const run = buildTestGuest(stale);
    expect(run.status, run.stderr).toBe(0);
    expect(run.stderr).toContain('building the test guest');
    const rebuilt = readManifest(stale);
    expect(rebuilt.builderHash).toBe(manifest.builderHash);
    expect(rebuilt.kernelPackageVersion).toBe(manifest.kernelPackageVersion);
    // The new folder replaced the old one: nothing of the old one is left.
    expect(readdirSync(stale).sort()).toEqual(['disk.qcow2', 'initramfs.cpio.gz', 'manifest.json', 'vmlinuz']);
    expect(readdirSync(parent).filter((n) => n.startsWith('.test-guest-build'))).toEqual([]);
    // The kernel is the same package's, byte for byte.
    expect(rebuilt.files.vmlinuz.sha256).toBe(manifest.files.vmlinuz.sha256);
  }, 300_000);
});

describe('the test guest under QEMU (TCG)', () => {
  it('direct kernel boot prints READY with the name from novalet.name=, a CPU model and the whole flag list', async () => {
    const started = Date.now();
    const q = await bootDirect(`console=ttyS0 quiet novalet.name=t1`);
    const line = await q.waitForLine(READY_PREFIX, BOOT_MS);
    const ms = Date.now() - started;
    const ready = parseReadyMarker(line);
    expect(ready, line).toBeDefined();
    expect(ready?.name).toBe('t1');
    // TCG's default CPU model is qemu64.
    expect(ready?.cpuModel).toMatch(/^QEMU Virtual CPU/);
    expect(ready?.flags).toEqual(expect.arrayContaining(['fpu', 'tsc', 'cx8', 'sse2', 'lm', 'hypervisor']));
    for (const f of ready?.flags ?? []) expect(f).toMatch(/^[a-z0-9_]+$/);
    // The marker starts its own line, and there is no disk line without a disk.
    expect(line.startsWith(READY_PREFIX)).toBe(true);
    expect(q.lines.some((l) => l.includes(DISK_PREFIX))).toBe(false);
    expect(q.exit).toBeUndefined(); // it keeps running
    console.log(`test guest: READY ${ms} ms after QEMU started (direct kernel boot, TCG)`);
  });

  it('reflects -cpu flags: Nehalem has sse4_2, Nehalem,-sse4.2 has not', async () => {
    const withIt = await bootDirect('console=ttyS0 quiet novalet.name=nehalem', ['-cpu', 'Nehalem']);
    const a = parseReadyMarker(await withIt.waitForLine(READY_PREFIX, BOOT_MS));
    await withIt.kill();
    const without = await bootDirect('console=ttyS0 quiet novalet.name=nehalem-minus', ['-cpu', 'Nehalem,-sse4.2']);
    const b = parseReadyMarker(await without.waitForLine(READY_PREFIX, BOOT_MS));
    expect(a?.name).toBe('nehalem');
    expect(a?.cpuModel).toContain('Nehalem');
    expect(a?.flags).toContain('sse4_2');
    expect(a?.flags).toContain('ssse3');
    expect(b?.name).toBe('nehalem-minus');
    expect(b?.cpuModel).toContain('Nehalem');
    expect(b?.flags).not.toContain('sse4_2');
    expect(b?.flags).toContain('ssse3');
    expect(b?.flags).toContain('sse4_1');
  });

  it('the qcow2 disk boots by itself through the BIOS and takes its name from the DMI serial', async () => {
    const q = new QemuRun(['-drive', `file=${file('disk.qcow2')},if=virtio,format=qcow2,snapshot=on`, '-smbios', 'type=1,serial=t2']);
    const line = await q.waitForLine(READY_PREFIX, BOOT_MS);
    const ready = parseReadyMarker(line);
    expect(ready?.name).toBe('t2');
    expect(ready?.cpuModel).toMatch(/^QEMU Virtual CPU/);
    expect(ready?.flags).toContain('lm');
    const console = q.console();
    // No -kernel: the BIOS ran the disk's MBR, which ran SYSLINUX from the FAT partition.
    expect(console).toMatch(/SYSLINUX 6\.\d+/);
    // The disk it booted from is /dev/vda; its partition's label is printed before READY.
    const disk = q.lines.findIndex((l) => l.startsWith(`${DISK_PREFIX} `));
    expect(disk, console).toBeGreaterThanOrEqual(0);
    expect(q.lines[disk]).toBe(`${DISK_PREFIX} NOVALET-TG`);
    expect(disk).toBeLessThan(q.lines.findIndex((l) => l.startsWith(READY_PREFIX)));
  });

  it('a raw virtio disk: DISK shows its first line; no name anywhere gives name=unknown', async () => {
    const raw = path.join(scratch, 'data.raw');
    writeFileSync(raw, Buffer.concat([Buffer.from('novalet data disk 42\nsecond line\n'), Buffer.alloc(1024 * 1024)]));
    const q = await bootDirect('console=ttyS0 quiet', ['-drive', `file=${raw},if=virtio,format=raw,readonly=on`]);
    const ready = parseReadyMarker(await q.waitForLine(READY_PREFIX, BOOT_MS));
    expect(q.lines).toContain(`${DISK_PREFIX} novalet data disk 42`);
    expect(ready?.name).toBe('unknown');
  });

  it('the ACPI power button (QMP system_powerdown) makes the guest print POWEROFF and QEMU exit by itself', async () => {
    const sock = path.join(scratch, 'qmp.sock');
    rmSync(sock, { force: true });
    const q = await bootDirect('console=ttyS0 quiet novalet.name=t3', ['-qmp', `unix:${sock},server=on,wait=off`]);
    await q.waitForLine(READY_PREFIX, BOOT_MS);
    expect(q.exit).toBeUndefined();
    const pressed = Date.now();
    const replies = await qmp(sock, ['system_powerdown']);
    expect(replies).toEqual([{ return: {} }, { return: {} }]);
    await q.waitForLine(POWEROFF_LINE, 20_000);
    const exit = await q.waitForExit(20_000);
    // QEMU ended on its own (the guest powered off), not by a signal of ours.
    expect(exit).toEqual({ code: 0, signal: null });
    console.log(`test guest: powered off ${Date.now() - pressed} ms after the power button`);
  });
});
