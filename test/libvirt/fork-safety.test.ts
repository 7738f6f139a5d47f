/**
 * libuv's atfork handler against libvirt's double fork (fork-safety.ts): a
 * plain `node` process has libuv's pipe at descriptors 4 and 5, where libvirt
 * cannot start QEMU; relaunched with runForkSafe() it can. Vitest's forks have
 * an IPC socket at 3, which moves libuv's pipe out of the way — as the other
 * tests, which start QEMU, show. (These children start with every
 * descriptor above stderr closed, as a plain `node` would.)
 */
import { describe, expect, it } from 'vitest';
import { forkHazard } from '../../hypervisor/libvirt/fork-safety.js';
import { processesMentioning, runNodeProgram, TEST_POOL_BASE } from './libvirt-test-support.js';

function startDomainProgram(relaunch: boolean): string {
  return `
    import { forkHazard, runForkSafe } from './dist/hypervisor/libvirt/fork-safety.js';
    import { openEmbeddedRootFromPool } from './dist/hypervisor/libvirt/embedded-root-pool.js';
    if (${relaunch}) {
      const code = await runForkSafe();
      if (code !== null) process.exit(code);
    }
    const { connection, root } = await openEmbeddedRootFromPool(${JSON.stringify(TEST_POOL_BASE)});
    const name = 'novalet-test-fork-' + process.pid;
    const domain = await connection.defineDomain(
      "<domain type='qemu'><name>" + name + "</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>" +
      "<os><type arch='x86_64' machine='pc'>hvm</type></os><devices><serial type='file'><source path='" + root + "/" + name + ".log'/></serial></devices></domain>");
    const answer = { hazard: forkHazard(), relaunched: process.env.NOVALET_FORK_SAFE_FDS ?? null, name };
    try {
      await domain.create();
      answer.state = (await domain.getState()).state;
      await domain.destroy();
    } catch (error) {
      answer.code = error.code;
      answer.message = error.message;
    } finally {
      await domain.undefine();
      await domain.free();
      await connection.close();
    }
    console.log(JSON.stringify(answer));
    process.exitCode = 7;
  `;
}

describe('fork safety', () => {
  it('this vitest fork has no hazard (its IPC socket holds descriptor 3)', () => {
    expect(forkHazard()).toBeNull();
  });

  it('a plain node process has libuv at 4 and 5: starting a domain fails early with LIBVIRT_FORK_HAZARD', async () => {
    const result = await runNodeProgram(startDomainProgram(false), 60_000, { onlyStdio: true });
    expect(result.code).toBe(7);
    const answer = JSON.parse(result.stdout.trim()) as Record<string, unknown>;
    expect(answer).toMatchObject({ hazard: [4, 5], relaunched: null, code: 'LIBVIRT_FORK_HAZARD' });
    expect(answer.message).toMatch(/^libvirt's embedded driver cannot start domain novalet-test-fork-\d+ .* in this process: Node's libuv holds descriptors 4 and 5/);
    expect(await processesMentioning(`guest=${String(answer.name)},`)).toEqual([]);
  }, 60_000);

  it('relaunched by runForkSafe, the same program starts QEMU, and its exit code comes back', async () => {
    const result = await runNodeProgram(startDomainProgram(true), 60_000, { onlyStdio: true });
    expect(result.code).toBe(7);
    const answer = JSON.parse(result.stdout.trim()) as Record<string, unknown>;
    expect(answer).toMatchObject({ hazard: null, relaunched: '1', state: 'running' });
    expect(await processesMentioning(`guest=${String(answer.name)},`)).toEqual([]);
  }, 60_000);
});
