/**
 * The host probe: everything the KVM decision needs, gathered from a root
 * directory — `/` on a real host, a captured tree (a test fixture) otherwise.
 * Nothing is changed on the host; the only side effect is opening the KVM
 * device (and creating and at once closing one empty VM on it).
 *
 * Which ioctls answer for `<root>/dev/kvm`: the caller's `kvmIoctls` if
 * given; else, on `/`, the real kernel through koffi; else a recording at
 * `<root>/kvm-ioctl.json` if the tree has one; else the real kernel again
 * (which answers a captured regular file as it would any: ENOTTY).
 */
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseCpuInfo } from './cpuinfo.js';
import type { CpuInfo, HostProbe } from './facts.js';
import { koffiKvmIoctls } from './koffi-kvm-ioctls.js';
import { probeKvmDevice } from './kvm-device.js';
import type { KvmIoctls } from './kvm-ioctls.js';
import { probeKvmModule } from './kvm-module.js';
import { identifyOuterHypervisor, readHypervisorEvidence } from './outer-hypervisor.js';
import { loadRecordedKvmIoctls } from './recorded-kvm-ioctls.js';

export interface ProbeHostOptions {
  /** Root of the tree to probe; default '/'. */
  root?: string;
  /** Who answers the /dev/kvm ioctls; see the file comment for the default. */
  kvmIoctls?: KvmIoctls;
  /** Machine architecture; default os.machine(). */
  arch?: string;
}

async function readCpuInfo(root: string): Promise<CpuInfo> {
  let text = '';
  try {
    text = await readFile(path.join(root, 'proc/cpuinfo'), 'utf8');
  } catch {
    // No cpuinfo (an unusual tree): every field null, no flags.
  }
  return parseCpuInfo(text);
}

async function defaultKvmIoctls(root: string): Promise<KvmIoctls> {
  if (root === path.parse(root).root) return koffiKvmIoctls;
  return (await loadRecordedKvmIoctls(path.join(root, 'kvm-ioctl.json'))) ?? koffiKvmIoctls;
}

export async function probeHost(options: ProbeHostOptions = {}): Promise<HostProbe> {
  const root = path.resolve(options.root ?? '/');
  const arch = options.arch ?? os.machine();
  const ioctls = options.kvmIoctls ?? defaultKvmIoctls(root);
  // All reads are independent; the device probe's synchronous ioctls run
  // while the file reads are in flight on libuv's thread pool.
  const [cpu, evidence, kvmModule, kvmDevice] = await Promise.all([
    readCpuInfo(root),
    readHypervisorEvidence(root),
    probeKvmModule(root),
    probeKvmDevice(path.join(root, 'dev/kvm'), ioctls),
  ]);
  return { root, arch, cpu, kvmDevice, kvmModule, hypervisor: identifyOuterHypervisor(evidence, cpu) };
}
