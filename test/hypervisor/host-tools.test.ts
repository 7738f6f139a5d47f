import { chmodSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { findQemuEmulators, probeHostTools } from '../../hypervisor/host/tools.js';
import { formatLibvirtVersion } from '../../hypervisor/libvirt/library.js';

describe('host tools', () => {
  it('finds this machine\'s QEMU emulators, qemu-img and libvirt library for real', async () => {
    const tools = await probeHostTools('/');
    expect(tools.qemuEmulators.x86_64).toBe('/usr/bin/qemu-system-x86_64');
    expect(tools.qemuEmulators.aarch64).toBe('/usr/bin/qemu-system-aarch64');
    expect(Object.keys(tools.qemuEmulators)).not.toContain('x86_64-microvm');
    expect(tools.qemuImg).toBe('/usr/bin/qemu-img');
    expect(tools.libvirt.loadable).toBe(true);
    expect(tools.libvirt.version).toMatch(/^\d+\.\d+\.\d+$/);
  });

  it('counts only executable qemu-system-* files, skips variants, and names arm as armv7l', async () => {
    const root = mkdtempSync(path.join(tmpdir(), 'novalet-tools-'));
    mkdirSync(path.join(root, 'usr/bin'), { recursive: true });
    const make = (name: string, mode: number) => {
      const file = path.join(root, 'usr/bin', name);
      writeFileSync(file, '');
      chmodSync(file, mode);
    };
    make('qemu-system-x86_64', 0o755);
    make('qemu-system-x86_64-microvm', 0o755);
    make('qemu-system-arm', 0o755);
    make('qemu-system-riscv64', 0o644);
    expect(await findQemuEmulators(root)).toEqual({ x86_64: '/usr/bin/qemu-system-x86_64', armv7l: '/usr/bin/qemu-system-arm' });
    expect(await findQemuEmulators(path.join(root, 'nowhere'))).toEqual({});
  });

  it('decodes libvirt\'s version number', () => {
    expect(formatLibvirtVersion(9_000_000)).toBe('9.0.0');
    expect(formatLibvirtVersion(10_010_002)).toBe('10.10.2');
  });
});
