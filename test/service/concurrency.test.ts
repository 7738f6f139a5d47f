/** Per-instance serialisation and nova's max_concurrent_builds (service/keyed-lock.ts, service/slots.ts). */
import { describe, expect, it } from 'vitest';
import { KeyedLock } from '../../service/keyed-lock.js';
import { Slots } from '../../service/slots.js';

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

describe('Slots', () => {
  it('runs at most the limit at once, in arrival order', async () => {
    const slots = new Slots(2);
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
    const slots = new Slots(0);
    let running = 0;
    let most = 0;
    await Promise.all(Array.from({ length: 12 }, () => slots.run(async () => ((running += 1), (most = Math.max(most, running)), await tick(), (running -= 1)))));
    expect(most).toBe(12);
  });

  it('a waiter whose signal aborts leaves the line without taking a slot; the next one gets it', async () => {
    const slots = new Slots(1);
    let release!: () => void;
    const first = slots.run(() => new Promise<void>((resolve) => (release = resolve)));
    const giveUp = new AbortController();
    const second = slots.run(async () => 'second ran', giveUp.signal);
    const third = slots.run(async () => 'third ran');
    expect(slots.waiting).toBe(2);
    giveUp.abort(new Error('deleted while waiting'));
    await expect(second).rejects.toThrow('deleted while waiting');
    expect(slots.waiting).toBe(1);
    release();
    await first;
    await expect(third).resolves.toBe('third ran');
    expect(slots.running).toBe(0);
  });

  it('an aborted signal is refused before waiting; resize lets more waiters in at once', async () => {
    const slots = new Slots(1);
    await expect(slots.run(async () => 1, AbortSignal.abort(new Error('already')))).rejects.toThrow('already');
    const releases: (() => void)[] = [];
    const hold = () => slots.run(() => new Promise<void>((resolve) => releases.push(resolve)));
    const runs = [hold(), hold(), hold()];
    await tick();
    expect([slots.running, slots.waiting]).toEqual([1, 2]);
    slots.resize(3);
    await tick();
    expect([slots.running, slots.waiting]).toEqual([3, 0]);
    for (const r of releases) r();
    await Promise.all(runs);
    expect(slots.running).toBe(0);
  });
});
