import { constants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import type { NovaletConfig } from '../config/novalet-config.js';
import { NovaletError } from '../config/novalet-error.js';
import { assembleComputeHost, type ComputeHost } from '../hypervisor/compute-host.js';
import { MAX_CPU_DEFINITIONS, readCpuDefinitions, tooMany, type CpuDefinition } from '../hypervisor/cpu/definitions.js';
import { isX86 } from '../hypervisor/host/cpuinfo.js';
import { emulatorFor } from '../hypervisor/host/tools.js';
import type { HypervisorCpuTarget } from '../hypervisor/libvirt/connection.js';

/** Larger than any host's capabilities (some 30 KiB) times a pool's worth pasted together. */
export const MAX_CPU_FILE_BYTES = 1024 * 1024;

/**
 * A CPU file's text: a regular file (not a directory, device or pipe), of at
 * most MAX_CPU_FILE_BYTES, of which at most one byte more is read.
 */
async function readCpuFile(file: string): Promise<string> {
  if (file === '') throw new NovaletError('CPU_FILE_UNREADABLE', 'The CPU FILE is an empty path.', 'Give the path of an XML or JSON file.');
  let handle: FileHandle;
  try {
    // O_NONBLOCK: opening a FIFO must not wait for a writer before it is refused.
    handle = await open(file, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    throw new NovaletError('CPU_FILE_UNREADABLE', `The CPU file ${file} cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'}).`, 'Give the path of an XML or JSON file.');
  }
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) {
      const what = stat.isDirectory() ? 'a directory' : 'not a regular file (a device, pipe or socket)';
      throw new NovaletError('CPU_FILE_UNREADABLE', `The CPU file ${file} is ${what}.`, 'Give the path of an XML or JSON file; save the output of a command to a file first.');
    }
    const buffer = Buffer.alloc(MAX_CPU_FILE_BYTES + 1);
    let length = 0;
    while (length < buffer.length) {
      const { bytesRead } = await handle.read(buffer, length, buffer.length - length, length);
      if (bytesRead === 0) break;
      length += bytesRead;
    }
    if (length > MAX_CPU_FILE_BYTES) {
      throw new NovaletError(
        'CPU_FILE_TOO_LARGE',
        `The CPU file ${file} is larger than ${MAX_CPU_FILE_BYTES / 1024 / 1024} MiB, more than a pool's CPU definitions take.`,
        'Give only the CPU definitions (a <cpu>, or `virsh capabilities` of each host), or baseline the pool in parts.',
      );
    }
    return buffer.subarray(0, length).toString('utf8');
  } finally {
    await handle.close();
  }
}

/** The CPU definitions in the files named, in order; at most MAX_CPU_DEFINITIONS in all. */
export async function cpuDefinitionsFromFiles(files: string[]): Promise<CpuDefinition[]> {
  const all: CpuDefinition[] = [];
  for (const file of files) {
    const found = readCpuDefinitions(await readCpuFile(file), file);
    if (all.length + found.length > MAX_CPU_DEFINITIONS) throw tooMany(`The files given hold more than ${MAX_CPU_DEFINITIONS} CPU definitions`);
    for (const cpu of found) all.push(cpu);
  }
  return all;
}

export interface CpuTarget {
  target: HypervisorCpuTarget;
  /** "virt type qemu (TCG)" and the like, for what the commands print. */
  description: string;
}

/**
 * What libvirt compares against: the emulator for the CPU's architecture and
 * the virt type an instance of that architecture gets here (or the one asked
 * for), as the agent would launch it — KVM only where KVM is usable. Where no
 * instance can run, TCG is what there is to compare with.
 */
export function cpuTarget(host: ComputeHost, cpuArches: string[], requested: 'kvm' | 'qemu' | undefined): CpuTarget {
  const arch = targetArch(cpuArches, host.probe.arch);
  const emulator = emulatorFor(host.tools.qemuEmulators, arch);
  // The host's own decision for its architecture; another architecture's instances are the driver's to decide (TCG).
  const virttype = requested ?? host.driver.virtTypeOf({ guestArch: arch }).effective ?? 'qemu';
  return { target: { emulator, arch, virttype }, description: `virt type ${virttype}${virttype === 'qemu' ? ' (TCG)' : ' (KVM)'} with ${path.basename(emulator)}` };
}

/**
 * The one architecture the CPUs are compared or baselined for. 32- and
 * 64-bit x86 CPUs are one family to libvirt (a 32-bit workstation's CPU can
 * be baselined with a 64-bit server's), checked against this host's x86
 * emulator; other architectures must all be the same.
 */
export function targetArch(cpuArches: string[], hostArch: string): string {
  const arches = [...new Set(cpuArches)];
  if (arches.length > 0 && arches.every(isX86)) return isX86(hostArch) ? hostArch : 'x86_64';
  if (arches.length !== 1) {
    throw new NovaletError('CPU_ARCH_MIXED', `The CPUs are of different architectures (${arches.join(', ')}); libvirt compares and baselines CPUs of one architecture (32- and 64-bit x86 count as one).`, 'Give CPUs of one architecture.');
  }
  return arches[0] as string;
}

/** The host the CPU commands compare against, through the one assembly (this boot's self-test, never a new one). */
export function cpuCommandHost(config: NovaletConfig, progress: (what: string) => void): Promise<ComputeHost> {
  return assembleComputeHost({ config, purpose: 'command', selfTest: 'recorded', progress });
}
