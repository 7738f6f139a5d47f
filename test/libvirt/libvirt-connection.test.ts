/**
 * Opening and closing libvirt connections (embedded QEMU driver), the event
 * loop's life with them, and the two ways an embedded root can be taken.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkLibvirtLibrary } from '../../hypervisor/libvirt/library.js';
import { embeddedUri, prepareEmbeddedRoot } from '../../hypervisor/libvirt/embedded-root.js';
import { eventLoopStatus } from '../../hypervisor/libvirt/event-loop.js';
import { LibvirtConnection } from '../../hypervisor/libvirt/connection.js';
import { LibvirtError } from '../../hypervisor/libvirt/error.js';
import { openTestRoot, runNodeProgram, waitFor } from './libvirt-test-support.js';

let connection: LibvirtConnection;
let root: string;

beforeAll(async () => {
  ({ connection, root } = await openTestRoot());
}, 120_000);

afterAll(async () => {
  await connection?.close();
  // The last connection closed: the loop stops re-arming and its iteration in flight returns.
  await waitFor('the event loop to stop', () => (eventLoopStatus().running ? undefined : true), 5_000);
  expect(eventLoopStatus().holders).toBe(0);
});

describe('LibvirtConnection', () => {
  it('opens an embedded root: its URI, libvirt version, no close watch (there is no socket to lose)', async () => {
    expect(connection.uri).toBe(embeddedUri(root));
    expect(connection.closed).toBe(false);
    expect(connection.watchesClose).toBe(false);
    expect(await connection.getLibVersion()).toBe(checkLibvirtLibrary().version);
    expect(eventLoopStatus()).toMatchObject({ registered: true, running: true, failures: 0 });
    expect(eventLoopStatus().holders).toBeGreaterThanOrEqual(1);
  });

  it('opens the same root again in this process, and closes that connection alone', async () => {
    const holders = eventLoopStatus().holders;
    const second = await LibvirtConnection.open(await prepareEmbeddedRoot(root));
    expect(eventLoopStatus().holders).toBe(holders + 1);
    expect(await second.getLibVersion()).toBe(await connection.getLibVersion());
    await Promise.all([second.close(), second.close()]);
    await second.close();
    expect(second.closed).toBe(true);
    expect(eventLoopStatus().holders).toBe(holders);
    await expect(second.getCapabilities()).rejects.toMatchObject({ code: 'LIBVIRT_CONNECTION_CLOSED' });
    expect(() => second.address).toThrow(/is closed/);
    // The first connection is untouched.
    expect(await connection.getCapabilities()).toContain('<capabilities>');
  });

  it('close waits for the calls in flight', async () => {
    const second = await LibvirtConnection.open(connection.uri);
    const capabilities = second.getCapabilities();
    const closing = second.close();
    expect(await capabilities).toContain('<capabilities>');
    await closing;
  });

  it('refuses a second root in this process with EMBEDDED_ROOT_CONFLICT naming both roots', async () => {
    const other = await mkdtemp('/var/tmp/novalet-test-other-root-');
    try {
      const error = await LibvirtConnection.open(await prepareEmbeddedRoot(other)).then(
        () => null,
        (thrown: unknown) => thrown,
      );
      expect(error).toBeInstanceOf(LibvirtError);
      expect(error).toMatchObject({ code: 'EMBEDDED_ROOT_CONFLICT', libvirtCodeName: 'VIR_ERR_INTERNAL_ERROR' });
      expect((error as Error).message).toContain(`already embeds libvirt's QEMU driver at ${root}, so it cannot open ${other}`);
    } finally {
      await rm(other, { recursive: true, force: true });
    }
    expect(await connection.getLibVersion()).toBe(checkLibvirtLibrary().version);
  });

  it('another process cannot open this root: EMBEDDED_ROOT_BUSY naming the root and this pid; its embedded driver then stays down', async () => {
    const fresh = await mkdtemp('/var/tmp/novalet-test-fresh-root-');
    try {
      const result = await runNodeProgram(`
        import { LibvirtConnection } from './dist/hypervisor/libvirt/connection.js';
        import { prepareEmbeddedRoot } from './dist/hypervisor/libvirt/embedded-root.js';
        const answers = [];
        for (const uri of [${JSON.stringify(connection.uri)}, await prepareEmbeddedRoot(${JSON.stringify(fresh)})]) {
          try {
            await LibvirtConnection.open(uri);
            answers.push({ opened: uri });
          } catch (error) {
            answers.push({ code: error.code, libvirtCodeName: error.libvirtCodeName, message: error.message });
          }
        }
        console.log(JSON.stringify(answers));
      `);
      // Exits by itself: a failed open gives the event loop back.
      expect(result.code).toBe(0);
      const [busy, down] = JSON.parse(result.stdout.trim()) as Array<{ code: string; libvirtCodeName: string; message: string }>;
      expect(busy!.code).toBe('EMBEDDED_ROOT_BUSY');
      expect(busy!.libvirtCodeName).toBe('VIR_ERR_SYSTEM_ERROR');
      expect(busy!.message).toContain(`The embedded libvirt root ${root} is in use by another process (pid ${process.pid})`);
      expect(busy!.message).toContain(`${root}/run/qemu/driver.pid is locked`);
      expect(busy!.message).toMatch(/give this one its own root directory/);
      // libvirt does not retry its embedded driver in that process, whatever the root.
      expect(down!.code).toBe('EMBEDDED_DRIVER_DOWN');
      expect(down!.libvirtCodeName).toBe('VIR_ERR_INTERNAL_ERROR');
      expect(down!.message).toContain(`libvirt's embedded QEMU driver is down in this process, so it cannot open ${fresh}: it failed to start earlier (The embedded libvirt root ${root} is in use`);
    } finally {
      await rm(fresh, { recursive: true, force: true });
    }
  });

  it('a process that opened a root, subscribed to events and closed exits by itself: the event loop does not hold Node', async () => {
    const own = await mkdtemp('/var/tmp/novalet-test-exit-root-');
    try {
      const result = await runNodeProgram(
        `
        import { LibvirtConnection } from './dist/hypervisor/libvirt/connection.js';
        import { prepareEmbeddedRoot } from './dist/hypervisor/libvirt/embedded-root.js';
        import { eventLoopStatus } from './dist/hypervisor/libvirt/event-loop.js';
        const connection = await LibvirtConnection.open(await prepareEmbeddedRoot(${JSON.stringify(own)}));
        const stop = connection.onLifecycleEvent(() => {});
        await stop.ready;
        stop();
        await connection.close();
        console.log(JSON.stringify(eventLoopStatus()));
        `,
        30_000,
      );
      expect(result.stderr).not.toMatch(/Error/);
      expect(result.code).toBe(0);
      expect(JSON.parse(result.stdout.trim())).toMatchObject({ registered: true, holders: 0, failures: 0 });
      expect(result.ms).toBeLessThan(15_000);
    } finally {
      await rm(own, { recursive: true, force: true });
    }
  });

  it('a process that exits (process.exit, or an uncaught error) with a connection still open does not hang', async () => {
    const own = await mkdtemp('/var/tmp/novalet-test-exit-root-');
    try {
      for (const ending of ['process.exit(5)', "throw new Error('boom')"]) {
        const result = await runNodeProgram(
          `
          import { LibvirtConnection } from './dist/hypervisor/libvirt/connection.js';
          import { prepareEmbeddedRoot } from './dist/hypervisor/libvirt/embedded-root.js';
          const connection = await LibvirtConnection.open(await prepareEmbeddedRoot(${JSON.stringify(own)}));
          ${ending};
          `,
          20_000,
        );
        expect(result.code).toBe(ending.startsWith('process') ? 5 : 1);
        expect(result.ms).toBeLessThan(15_000);
      }
    } finally {
      await rm(own, { recursive: true, force: true });
    }
  });

  it('qemu:///system in a process that embeds the driver is the embedded driver\'s, which wants a root', async () => {
    const holders = eventLoopStatus().holders;
    const error = await LibvirtConnection.open('qemu:///system').then(
      () => null,
      (thrown: unknown) => thrown,
    );
    expect(error).toBeInstanceOf(LibvirtError);
    expect(error).toMatchObject({
      code: 'LIBVIRT_ERROR',
      libvirtCodeName: 'VIR_ERR_INVALID_ARG',
      libvirtDomainName: 'VIR_FROM_URI',
      libvirtMessage: "invalid argument: Missing URI parameter 'root'",
    });
    expect(eventLoopStatus().holders).toBe(holders);
  });

  it('qemu:///system without a libvirt daemon: LIBVIRTD_UNREACHABLE with libvirt\'s socket error', async () => {
    const result = await runNodeProgram(`
      import { LibvirtConnection } from './dist/hypervisor/libvirt/connection.js';
      try {
        await LibvirtConnection.open('qemu:///system');
        console.log(JSON.stringify({ opened: true }));
      } catch (error) {
        const { code, libvirtCodeName, libvirtDomainName, libvirtMessage, message, remedy } = error;
        console.log(JSON.stringify({ code, libvirtCodeName, libvirtDomainName, libvirtMessage, message, remedy }));
      }
    `);
    expect(result.code).toBe(0);
    const answer = JSON.parse(result.stdout.trim()) as Record<string, string>;
    expect(answer).toMatchObject({
      code: 'LIBVIRTD_UNREACHABLE',
      libvirtCodeName: 'VIR_ERR_SYSTEM_ERROR',
      libvirtDomainName: 'VIR_FROM_RPC',
      libvirtMessage: "Failed to connect socket to '/var/run/libvirt/libvirt-sock': No such file or directory",
    });
    expect(answer.message).toMatch(/^libvirt could not open a connection to qemu:\/\/\/system: Failed to connect socket/);
    expect(answer.remedy).toMatch(/start it \(systemctl start libvirtd/);
  });
});
