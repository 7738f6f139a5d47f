import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { NovaletConfig } from '../config/novalet-config.js';
import { NovaletError } from '../config/novalet-error.js';
import { assembleComputeHost, type ComputeHost } from '../hypervisor/compute-host.js';
import { readCpuDefinitions, type CpuDefinition } from '../hypervisor/cpu/definitions.js';
import { isX86 } from '../hypervisor/host/cpuinfo.js';
import { emulatorFor } from '../hypervisor/host/tools.js';
import type { HypervisorCpuTarget } from '../hypervisor/libvirt/connection.js';
import { decideVirtType } from '../hypervisor/virt-type/decision.js';

/** The CPU definitions in the files named, in order. */
export async function cpuDefinitionsFromFiles(files: string[]): Promise<CpuDefinition[]> {
  const all: CpuDefinition[] = [];
  for (const file of files) {
    let content: string;
    try {
      content = await readFile(file, 'utf8');
    } catch (err) {
      throw new NovaletError('CPU_FILE_UNREADABLE', `The CPU file ${file} cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'}).`, 'Give the path of an XML file.');
    }
    all.push(...readCpuDefinitions(content, file));
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
  const virttype = requested ?? decideVirtType({ libvirt: host.config.libvirt, verdict: host.verdict, hostArch: host.probe.arch, guestArch: arch }).effective ?? 'qemu';
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
export function cpuCommandHost(config: NovaletConfig): Promise<ComputeHost> {
  return assembleComputeHost({ config, purpose: 'command', selfTest: 'recorded' });
}
