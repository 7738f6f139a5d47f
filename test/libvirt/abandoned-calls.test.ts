/**
 * Calls a caller stops waiting for at an abort (hypervisor/libvirt/abandoned-calls.ts):
 * the caller gets the reason at once, the call is counted until it ends, and
 * a command's exit stops the QEMU libvirt probes in its root — only that one.
 * The probing QEMUs here are stand-ins (a sleeping process named as QEMU, with
 * libvirt's probe arguments): a real probe lasts too short to be caught.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { abandonedCalls, endProbes, untilAborted } from '../../hypervisor/libvirt/abandoned-calls.js';
import { noteEmbeddedOpened } from '../../hypervisor/libvirt/embedded-driver-state.js';

function settled<T>(): { promise: Promise<T>; resolve: (value: T) => void; reject: (error: unknown) => void } {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

const outcome = (promise: Promise<unknown>): Promise<unknown> =>
  promise.then(
    (value) => ({ value }),
    (error: unknown) => ({ error }),
  );

describe('untilAborted', () => {
  it('is the call itself while nobody aborts: its value, or its error', async () => {
    const controller = new AbortController();
    expect(await untilAborted(Promise.resolve(7), controller.signal)).toBe(7);
    const failure = new Error('libvirt said no');
    expect(await outcome(untilAborted(Promise.reject(failure), controller.signal))).toEqual({ error: failure });
    expect(abandonedCalls()).toBe(0);
  });

  it('rejects with the reason at the abort, and counts the call as abandoned until it ends (with a value or an error)', async () => {
    const calls = [settled<string>(), settled<string>()];
    const controller = new AbortController();
    const waiting = calls.map((call) => outcome(untilAborted(call.promise, controller.signal)));
    const reason = new Error('--timeout 1 s reached');
    controller.abort(reason);
    expect(await Promise.all(waiting)).toEqual([{ error: reason }, { error: reason }]);
    expect(abandonedCalls()).toBe(2);
    calls[0]!.resolve('capabilities');
    await calls[0]!.promise;
    await Promise.resolve();
    expect(abandonedCalls()).toBe(1);
    calls[1]!.reject(new Error('the probe failed'));
    await calls[1]!.promise.catch(() => undefined);
    await Promise.resolve();
    expect(abandonedCalls()).toBe(0);
  });

  it('with a signal aborted already: the reason at once, the call counted until it ends', async () => {
    const call = settled<number>();
    const reason = new Error('interrupted by SIGTERM');
    expect(await outcome(untilAborted(call.promise, AbortSignal.abort(reason)))).toEqual({ error: reason });
    expect(abandonedCalls()).toBe(1);
    call.resolve(1);
    await call.promise;
    await Promise.resolve();
    expect(abandonedCalls()).toBe(0);
  });

  it('without a signal it is the call, and nothing is ever abandoned', async () => {
    const call = settled<number>();
    const waiting = untilAborted(call.promise, undefined);
    expect(waiting).toBe(call.promise);
    call.resolve(3);
    expect(await waiting).toBe(3);
    expect(abandonedCalls()).toBe(0);
  });
});

describe('endProbes', () => {
  const started: ChildProcess[] = [];
  afterAll(() => {
    for (const child of started) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });

  /** A process named `qemu-system-x86_64` whose arguments are `args`, sleeping until killed. */
  async function standIn(args: string[]): Promise<ChildProcess> {
    const child = spawn('bash', ['-c', 'exec -a qemu-system-x86_64 /usr/bin/python3 -c "import time; time.sleep(600)" "$@"', 'stand-in', ...args], { stdio: 'ignore' });
    started.push(child);
    // Until exec has named it so.
    for (let i = 0; i < 100; i++) {
      if (readFileSync(`/proc/${child.pid}/cmdline`, 'utf8').startsWith('qemu-system-x86_64\0')) return child;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    throw new Error('the stand-in never started');
  }

  const exited = (child: ChildProcess): Promise<NodeJS.Signals | null> => new Promise((resolve) => (child.exitCode !== null || child.signalCode !== null ? resolve(child.signalCode) : child.once('exit', (_code, signal) => resolve(signal))));

  it('stops the QEMU libvirt probes in this process\'s root, and neither another root\'s probe nor a guest', async () => {
    const root = mkdtempSync(path.join(tmpdir(), 'novalet-probing-root-'));
    const other = mkdtempSync(path.join(tmpdir(), 'novalet-other-root-'));
    expect(endProbes(), 'no embedded root in this process yet').toEqual([]);
    const probeArgs = (r: string) => ['-S', '-no-user-config', '-nodefaults', '-nographic', '-machine', 'none,accel=kvm:tcg', '-qmp', `unix:${r}/lib/qemu/qmp-AbC123/qmp.monitor,server=on,wait=off`, '-pidfile', `${r}/lib/qemu/qmp-AbC123/qmp.pid`, '-daemonize'];
    const ours = await standIn(probeArgs(root));
    const theirs = await standIn(probeArgs(other));
    const guest = await standIn(['-name', 'guest=novalet-x,debug-threads=on', '-object', `secret,id=masterKey0,format=raw,file=${root}/lib/qemu/domain-1-novalet-x/master-key.aes`]);
    noteEmbeddedOpened(root);
    expect(endProbes()).toEqual([ours.pid]);
    expect(await exited(ours)).toBe('SIGKILL');
    expect(theirs.exitCode === null && theirs.signalCode === null, "another root's probe runs on").toBe(true);
    expect(guest.exitCode === null && guest.signalCode === null, 'a guest runs on').toBe(true);
  });
});
