/**
 * The libvirt call threads (call-pool.ts): started ahead of the first call
 * (warm), they never keep a process alive while idle — a command that fails
 * on its input before calling libvirt still exits at once; a burst starts
 * more of them, and those beyond the first stop once idle.
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

  it('a burst starts a thread per concurrent call up to the size; those beyond the first stop after the idle time, even while calls go on', async () => {
    const pool = new LibvirtCallPool(3, 300);
    try {
      // libc's usleep, found through libvirt.so.0's dependencies: a call that holds its thread.
      const hold = { operation: 'wait', proto: 'int usleep(unsigned int usec)', args: [200_000], fails: 'never' as const };
      await Promise.all([pool.call(hold), pool.call(hold), pool.call(hold), pool.call(hold)]);
      expect(pool.threadCount).toBe(3);
      // One call at a time, more often than the idle time: the first thread takes them all.
      const until = Date.now() + 1200;
      while (Date.now() < until) {
        await pool.call(VERSION_CALL);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      expect(pool.threadCount).toBe(1);
      const outcome = await pool.call(VERSION_CALL);
      expect((outcome.args[0] as number[])[0]).toBeGreaterThan(1_000_000);
      await Promise.all([pool.call(hold), pool.call(hold)]);
      expect(pool.threadCount).toBe(2);
    } finally {
      await pool.terminate();
    }
  }, 20_000);

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
