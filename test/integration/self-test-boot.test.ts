/**
 * The self-test's boot against real libvirt and QEMU, where it must not
 * blame KVM: a guest QEMU cannot start at all (under TCG either) and a
 * process from which libvirt cannot fork QEMU (the fork hazard) give "could
 * not run", and nothing is recorded for this boot. Every case leaves no
 * domain, no QEMU and no work folder.
 */
import { existsSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { probeHostTools } from '../../hypervisor/host/tools.js';
import { bootSelfTestGuest } from '../../hypervisor/virt-type/self-test-boot.js';
import { readBootId } from '../../hypervisor/virt-type/self-test.js';
import { TEST_GUEST_DIR, buildTestGuest } from '../guest/test-guest.js';
import { openTestRoot, processesMentioning, runNodeProgram, TEST_POOL_BASE } from '../libvirt/libvirt-test-support.js';
import type { LibvirtConnection } from '../../hypervisor/libvirt/connection.js';

let connection: LibvirtConnection | null = null;

afterAll(async () => {
  await connection?.close();
});

async function domainNames(on: LibvirtConnection): Promise<string[]> {
  const domains = await on.listAllDomains();
  const names = domains.map((domain) => domain.name).sort();
  for (const domain of domains) domain.free();
  return names;
}

describe('KVM self-test boot', () => {
  it('a guest that QEMU cannot start under KVM nor under TCG: the self-test could not run, and nothing is left', async () => {
    const tools = await probeHostTools();
    const emulator = tools.qemuEmulators[process.arch === 'arm64' ? 'aarch64' : 'x86_64'];
    expect(emulator, 'QEMU is installed by deploy/setup.sh').toBeDefined();
    const guestDir = mkdtempSync(path.join(tmpdir(), 'novalet-broken-guest-'));
    writeFileSync(path.join(guestDir, 'vmlinuz'), 'not a kernel');
    writeFileSync(path.join(guestDir, 'initramfs.cpio.gz'), 'not an initramfs');
    const workDir = mkdtempSync(path.join(tmpdir(), 'novalet-selftest-work-'));
    ({ connection } = await openTestRoot());
    const before = await domainNames(connection);
    const arch = process.arch === 'arm64' ? 'aarch64' : 'x86_64';
    const outcome = await bootSelfTestGuest({ connection, guestDir, emulator: emulator!, arch, workDir, timeoutMs: 5000, bootId: await readBootId() });
    expect(outcome).toHaveProperty('notRun');
    expect((outcome as { notRun: string }).notRun).toMatch(/nor under TCG \(.+\), so QEMU or libvirt failed, not KVM$/);
    expect(readdirSync(workDir)).toEqual([]);
    expect(await domainNames(connection)).toEqual(before);
    expect(await processesMentioning(guestDir)).toEqual([]);
  }, 60_000);

  it('from a process whose descriptors make libvirt unable to fork QEMU, the self-test could not run and is not recorded', async () => {
    buildTestGuest();
    const state = mkdtempSync(path.join(tmpdir(), 'novalet-selftest-fork-'));
    const result = await runNodeProgram(
      `
      process.env.LIBVIRT_LOG_OUTPUTS = '3:file:${state}/libvirt.log';
      const { openEmbeddedRootFromPool } = await import('./dist/hypervisor/libvirt/embedded-root-pool.js');
      const { bootSelfTestGuest } = await import('./dist/hypervisor/virt-type/self-test-boot.js');
      const { forkHazard } = await import('./dist/hypervisor/libvirt/fork-safety.js');
      const { readBootId } = await import('./dist/hypervisor/virt-type/self-test.js');
      const { connection } = await openEmbeddedRootFromPool(${JSON.stringify(TEST_POOL_BASE)});
      try {
        const outcome = await bootSelfTestGuest({ connection, guestDir: ${JSON.stringify(TEST_GUEST_DIR)}, emulator: '/usr/bin/qemu-system-x86_64', arch: 'x86_64', workDir: ${JSON.stringify(state)}, timeoutMs: 5000, bootId: await readBootId() });
        console.log(JSON.stringify({ hazard: forkHazard(), outcome }));
      } finally {
        await connection.close();
      }
      `,
      60_000,
      { onlyStdio: true },
    );
    expect(result.code, result.stderr).toBe(0);
    const answer = JSON.parse(result.stdout.trim()) as { hazard: unknown; outcome: Record<string, unknown> };
    // A plain process has the hazard wherever this Node puts libuv's pipe (test/libvirt/fork-safety.test.ts).
    expect(answer.hazard).not.toBeNull();
    expect(answer.outcome).toHaveProperty('notRun');
    expect(String(answer.outcome.notRun)).toContain("libvirt's embedded driver cannot start domain");
    expect(existsSync(path.join(state, 'kvm-self-test.json'))).toBe(false);
    expect(readdirSync(state).filter((name) => name.startsWith('kvm-self-test-'))).toEqual([]);
  }, 60_000);
});
