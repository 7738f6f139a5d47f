/** Per-instance serialisation and nova's max_concurrent_builds. */
import { describe, expect, it } from 'vitest';
import { BuildSlots } from '../../agent/build-slots.js';
import { KeyedLock } from '../../agent/keyed-lock.js';

const tick = (ms = 5) => new Promise((resolve) => setTimeout(resolve, ms));

describe('KeyedLock', () => {
  it('never interleaves work on one key, lets other keys run alongside, and forgets idle keys', async () => {
    const lock = new KeyedLock();
    const trace: string[] = [];
    const job = (key: string, name: string) =>
      lock.run(key, async () => {
        trace.push(`${name}+`);
        await tick();
        trace.push(`${name}-`);
      });
    await Promise.all([job('a', 'a1'), job('a', 'a2'), job('b', 'b1')]);
    expect(trace.indexOf('a1-')).toBeLessThan(trace.indexOf('a2+'));
    expect(trace.indexOf('b1+')).toBeLessThan(trace.indexOf('a1-'));
    expect(lock.size).toBe(0);
  });

  it('a failing job releases the key for the next', async () => {
    const lock = new KeyedLock();
    await expect(lock.run('a', async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    await expect(lock.run('a', async () => 'next')).resolves.toBe('next');
  });
});

describe('BuildSlots', () => {
  it('runs at most the limit at once, in arrival order', async () => {
    const slots = new BuildSlots(2);
    let running = 0;
    let most = 0;
    const order: number[] = [];
    await Promise.all(
      [1, 2, 3, 4, 5].map((n) =>
        slots.run(async () => {
          running += 1;
          most = Math.max(most, running);
          order.push(n);
          await tick();
          running -= 1;
        }),
      ),
    );
    expect(most).toBe(2);
    expect(order).toEqual([1, 2, 3, 4, 5]);
    expect(slots.running).toBe(0);
  });

  it('0 means no limit', async () => {
    const slots = new BuildSlots(0);
    let running = 0;
    let most = 0;
    await Promise.all(Array.from({ length: 12 }, () => slots.run(async () => ((running += 1), (most = Math.max(most, running)), await tick(), (running -= 1)))));
    expect(most).toBe(12);
  });
});
