import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { buildDomainXml, domainNameFor } from '../instance/domain-xml.js';
import { NovaletError } from '../../config/novalet-error.js';
import type { SelfTestNotRun, SelfTestOutcome } from './self-test.js';
import { waitForConsoleLine } from '../instance/console-follow.js';
import { untilAborted } from '../libvirt/abandoned-calls.js';
import type { LibvirtConnection } from '../libvirt/connection.js';
import type { LibvirtDomain } from '../libvirt/domain.js';
import { READY_MARKER, testGuestCmdline, testGuestFiles } from './test-guest.js';

/** The self-test's domains carry this instance name in their metadata (the start-up sweep knows them by it). */
export const SELF_TEST_INSTANCE_NAME = 'kvm-self-test';
/** Its work folders under state_path: `kvm-self-test-<pid>-XXXXXX`, so that a sweep can tell whose they are. */
export const SELF_TEST_DIR_PREFIX = 'kvm-self-test-';

/**
 * Boots the test guest as a kvm domain and waits for its marker. Whatever
 * happens, the domain is destroyed and undefined and its files removed: the
 * self-test never leaves a guest hanging — also when `signal` aborts it
 * (the command was interrupted), which rejects with the signal's reason.
 *
 * When libvirt cannot define or start the kvm domain, the same guest is
 * started once under TCG: if that fails too, QEMU or libvirt is what failed
 * (a missing file, a refused configuration, a process that cannot fork QEMU),
 * not KVM, and the answer is that the self-test could not run.
 */
export async function bootSelfTestGuest(options: {
  connection: LibvirtConnection;
  guestDir: string;
  emulator: string;
  arch: string;
  workDir: string;
  timeoutMs: number;
  /** This boot's id, recorded as the domains' owner with this process (leftovers.ts sweeps what a killed self-test left). */
  bootId: string;
  signal?: AbortSignal;
}): Promise<SelfTestOutcome | SelfTestNotRun> {
  options.signal?.throwIfAborted();
  await mkdir(options.workDir, { recursive: true });
  const dir = await mkdtemp(path.join(options.workDir, `${SELF_TEST_DIR_PREFIX}${process.pid}-`));
  const consoleLog = path.join(dir, 'console.log');
  const started = Date.now();
  let domain: LibvirtDomain | null = null;
  try {
    // In a fresh root libvirt probes the emulator on its first use (seconds): only that, which makes
    // nothing, is left to run past an abort; the definition that follows is quick and always awaited.
    const probed = options.connection.getDomainCapabilities({ emulatorbin: options.emulator, arch: options.arch, virttype: 'qemu' }).catch(() => '');
    await untilAborted(probed, options.signal);
    try {
      domain = await options.connection.defineDomain(selfTestXml(options, 'kvm', consoleLog));
      await domain.create();
    } catch (err) {
      if (!(err instanceof NovaletError)) throw err;
      options.signal?.throwIfAborted();
      const control = await tcgControl(options, path.join(dir, 'control.log'));
      if (control !== null) {
        return { notRun: `libvirt could not start the test guest under KVM (${err.message}) nor under TCG (${control}), so QEMU or libvirt failed, not KVM` };
      }
      return { passed: false, detail: `libvirt could not start a KVM guest, though it starts the same guest under TCG: ${err.message}`, durationMs: Date.now() - started };
    }
    const marker = await waitForConsoleLine(consoleLog, READY_MARKER, options.timeoutMs, options.signal);
    options.signal?.throwIfAborted();
    const durationMs = Date.now() - started;
    if (marker) return { passed: true, detail: `the test guest reached user space under KVM in ${(durationMs / 1000).toFixed(1)} s`, durationMs };
    return {
      passed: false,
      detail: `the test guest printed no marker on its serial console within ${Math.round(options.timeoutMs / 1000)} s although libvirt reported it running`,
      durationMs,
    };
  } finally {
    if (domain) {
      // Clean-up: the self-test's own outcome is what is reported.
      await domain.remove().catch(() => undefined);
      domain.free();
    }
    await rm(dir, { recursive: true, force: true });
  }
}

/** Starts the same guest under TCG and removes it at once: null when it started, else why not. */
async function tcgControl(options: { connection: LibvirtConnection; guestDir: string; emulator: string; arch: string; bootId: string }, consoleLog: string): Promise<string | null> {
  let control: LibvirtDomain | null = null;
  try {
    control = await options.connection.defineDomain(selfTestXml(options, 'qemu', consoleLog));
    await control.create();
    return null;
  } catch (err) {
    if (!(err instanceof NovaletError)) throw err;
    return err.message;
  } finally {
    if (control) {
      await control.remove().catch(() => undefined);
      control.free();
    }
  }
}

function selfTestXml(options: { guestDir: string; emulator: string; arch: string; bootId: string }, virtType: 'kvm' | 'qemu', consoleLog: string): string {
  const files = testGuestFiles(options.guestDir);
  const uuid = randomUUID();
  return buildDomainXml({
    uuid,
    domainName: domainNameFor(uuid),
    virtType,
    arch: options.arch,
    machine: null,
    emulator: options.emulator,
    vcpus: 1,
    memoryMiB: 128,
    disk: null,
    kernel: files.kernel,
    initrd: files.initramfs,
    cmdline: testGuestCmdline('kvm-self-test'),
    consoleLog,
    cpu: null,
    metadata: {
      name: SELF_TEST_INSTANCE_NAME,
      createdAt: new Date().toISOString(),
      vcpus: 1,
      memoryMiB: 128,
      image: null,
      virtType,
      virtTypeReason: virtType === 'kvm' ? 'The KVM self-test.' : 'The KVM self-test\'s TCG control.',
      owner: { kind: 'self-test', pid: process.pid, bootId: options.bootId },
    },
  });
}
