/**
 * The libvirt call threads (call-pool.ts): started ahead of the first call
 * (warm), they never keep a process alive while idle — a command that fails
 * on its input before calling libvirt still exits at once.
 */
import { describe, expect, it } from 'vitest';
import { LibvirtCallPool } from '../../hypervisor/libvirt/call-pool.js';
import { runNodeProgram } from './libvirt-test-support.js';

const VERSION_CALL = {
  operation: 'ask the library version',
  proto: 'int virGetVersion(_Out_ unsigned long *libVer, const char *type, _Out_ unsigned long *typeVer)',
  args: [[0], null, null],
  fails: 'negative' as const,
};

describe('libvirt call pool', () => {
  it('warm() starts one thread and no more; the first call uses it', async () => {
    const pool = new LibvirtCallPool(2);
    try {
      pool.warm();
      pool.warm();
      expect(pool.threadCount).toBe(1);
      const outcome = await pool.call(VERSION_CALL);
      expect(outcome.value).toBe(0);
      expect((outcome.args[0] as number[])[0]).toBeGreaterThan(1_000_000);
      expect(pool.threadCount).toBe(1);
    } finally {
      await pool.terminate();
    }
  });

  it.each([
    ['before the thread is online', 'process.exitCode = 2;'],
    ['once it is online and idle', 'setTimeout(() => { process.exitCode = 2; }, 1000);'],
  ])('a warmed, idle thread does not keep the process alive (%s)', async (_when, then) => {
    const result = await runNodeProgram(
      `const { libvirtCallPool } = await import('./dist/hypervisor/libvirt/call-pool.js'); libvirtCallPool().warm(); ${then}`,
      15_000,
    );
    expect(result.code).toBe(2);
  }, 20_000);
});
