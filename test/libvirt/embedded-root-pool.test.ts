/**
 * The pool of embedded roots, with real libvirt in this process and in child
 * processes (which run the built dist/ tree). Its own base directory: these
 * roots never start QEMU, so they need no capability cache.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { embeddedRootHolder } from '../../hypervisor/libvirt/embedded-root-lock.js';
import { openEmbeddedRootFromPool, type EmbeddedPoolConnection } from '../../hypervisor/libvirt/embedded-root-pool.js';
import { REPO, runNodeProgram } from './libvirt-test-support.js';

let base: string;
let ours: EmbeddedPoolConnection;

beforeAll(async () => {
  base = await mkdtemp('/var/tmp/novalet-test-pool-');
  ours = await openEmbeddedRootFromPool(base, 3);
}, 120_000);

afterAll(async () => {
  await ours?.connection.close();
  // The roots hold no QEMU; this process keeps slot-0's lock until it exits, which rm does not mind.
  await rm(base, { recursive: true, force: true });
});

function poolProgram(size: number): string {
  return `
    import { openEmbeddedRootFromPool } from './dist/hypervisor/libvirt/embedded-root-pool.js';
    try {
      const { connection, root } = await openEmbeddedRootFromPool(${JSON.stringify(base)}, ${size});
      console.log(JSON.stringify({ root }));
      await connection.close();
    } catch (error) {
      console.log(JSON.stringify({ code: error.code, message: error.message }));
    }
  `;
}

describe('openEmbeddedRootFromPool', () => {
  it('gives this process the first slot, and the same slot again', async () => {
    expect(ours.root).toBe(`${base}/slot-0`);
    const again = await openEmbeddedRootFromPool(base, 3);
    expect(again.root).toBe(ours.root);
    await again.connection.close();
  });

  it('tells who holds a root without taking it: nobody for a free one, the holder for a held one', async () => {
    expect(embeddedRootHolder(`${base}/slot-2`)).toBeNull();
    const result = await runNodeProgram(`
      import { embeddedRootHolder } from './dist/hypervisor/libvirt/embedded-root-lock.js';
      console.log(JSON.stringify({ holder: embeddedRootHolder(${JSON.stringify(ours.root)}) }));
    `);
    expect(JSON.parse(result.stdout.trim())).toEqual({ holder: process.pid });
  });

  it('gives another process the next slot', async () => {
    const result = await runNodeProgram(poolProgram(3));
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout.trim())).toEqual({ root: `${base}/slot-1` });
  });

  it('skips a root that a process outside the pool holds', async () => {
    // A process that opens slot-1 itself, without the pool's claim, and keeps it a while.
    const holder = spawn(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `
        import { LibvirtConnection } from './dist/hypervisor/libvirt/connection.js';
        import { prepareEmbeddedRoot } from './dist/hypervisor/libvirt/embedded-root.js';
        const connection = await LibvirtConnection.open(await prepareEmbeddedRoot(${JSON.stringify(`${base}/slot-1`)}));
        console.log('ready');
        setTimeout(() => connection.close(), 5000);
        `,
      ],
      { cwd: REPO, stdio: ['ignore', 'pipe', 'ignore'] },
    );
    try {
      await new Promise<void>((resolve, reject) => {
        holder.stdout.on('data', (chunk: Buffer) => {
          if (chunk.toString().includes('ready')) resolve();
        });
        holder.on('exit', () => reject(new Error('the holder exited before it was ready')));
      });
      const result = await runNodeProgram(poolProgram(3));
      expect(JSON.parse(result.stdout.trim())).toEqual({ root: `${base}/slot-2` });
      const exhausted = await runNodeProgram(poolProgram(2));
      const answer = JSON.parse(exhausted.stdout.trim()) as { code: string; message: string };
      expect(answer.code).toBe('EMBEDDED_ROOT_POOL_EXHAUSTED');
      expect(answer.message).toBe(
        `Every embedded libvirt root under ${base} is held by another process: ${base}/slot-0 (claimed), ${base}/slot-1 (pid ${holder.pid}). ` +
          'Wait for one of those processes to finish, or stop it, and try again.',
      );
    } finally {
      holder.kill();
    }
  });
});
