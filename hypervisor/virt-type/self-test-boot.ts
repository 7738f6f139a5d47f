import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { buildDomainXml, domainNameFor } from '../instance/domain-xml.js';
import type { SelfTestOutcome } from './self-test.js';
import { waitForConsoleLine } from '../instance/console-follow.js';
import type { LibvirtConnection } from '../libvirt/connection.js';
import type { LibvirtDomain } from '../libvirt/domain.js';
import { READY_MARKER, testGuestCmdline, testGuestFiles } from './test-guest.js';

/**
 * Boots the test guest as a kvm domain and waits for its marker. Whatever
 * happens, the domain is destroyed and undefined and its files removed: the
 * self-test never leaves a guest hanging.
 */
export async function bootSelfTestGuest(options: {
  connection: LibvirtConnection;
  guestDir: string;
  emulator: string;
  arch: string;
  workDir: string;
  timeoutMs: number;
}): Promise<SelfTestOutcome> {
  const files = testGuestFiles(options.guestDir);
  const uuid = randomUUID();
  await mkdir(options.workDir, { recursive: true });
  const dir = await mkdtemp(path.join(options.workDir, 'kvm-self-test-'));
  const consoleLog = path.join(dir, 'console.log');
  const xml = buildDomainXml({
    uuid,
    domainName: domainNameFor(uuid),
    virtType: 'kvm',
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
      name: 'kvm-self-test',
      createdAt: new Date().toISOString(),
      vcpus: 1,
      memoryMiB: 128,
      image: null,
      virtType: 'kvm',
      virtTypeReason: 'The KVM self-test.',
    },
  });
  const started = Date.now();
  let domain: LibvirtDomain | null = null;
  try {
    domain = await options.connection.defineDomain(xml);
    try {
      await domain.create();
    } catch (err) {
      return { passed: false, detail: `libvirt could not start a KVM guest: ${(err as Error).message}`, durationMs: Date.now() - started };
    }
    const marker = await waitForConsoleLine(consoleLog, READY_MARKER, options.timeoutMs);
    const durationMs = Date.now() - started;
    if (marker) return { passed: true, detail: `the test guest reached user space under KVM in ${(durationMs / 1000).toFixed(1)} s`, durationMs };
    return {
      passed: false,
      detail: `the test guest printed no marker on its serial console within ${Math.round(options.timeoutMs / 1000)} s although libvirt reported it running`,
      durationMs,
    };
  } finally {
    if (domain) {
      await domain.remove();
      domain.free();
    }
    await rm(dir, { recursive: true, force: true });
  }
}
