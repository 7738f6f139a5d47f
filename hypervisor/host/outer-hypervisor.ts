/**
 * What runs beneath this host, if anything: the cpuinfo `hypervisor` flag,
 * DMI's sys_vendor/product_name, Xen's own traces, and whether we are in a
 * container (which shares the host's kernel, so it is no hypervisor, but
 * decides how a missing /dev/kvm is fixed).
 */
import { readFile } from 'node:fs/promises';
import { pathExists } from './path-exists.js';
import path from 'node:path';
import type { CpuInfo, OuterHypervisorFacts } from './facts.js';

/** The files read, raw (trimmed), null when absent. */
export interface HypervisorEvidence {
  dmiVendor: string | null;
  dmiProduct: string | null;
  procXen: boolean;
  sysHypervisorType: string | null;
  dockerenv: boolean;
  containerenv: boolean;
  systemdContainer: string | null;
}

async function readTrimmed(file: string): Promise<string | null> {
  try {
    const text = (await readFile(file, 'utf8')).trim();
    return text === '' ? null : text;
  } catch {
    return null;
  }
}


export async function readHypervisorEvidence(root: string): Promise<HypervisorEvidence> {
  const at = (relative: string) => path.join(root, relative);
  const [dmiVendor, dmiProduct, procXen, sysHypervisorType, dockerenv, containerenv, systemdContainer] = await Promise.all([
    readTrimmed(at('sys/class/dmi/id/sys_vendor')),
    readTrimmed(at('sys/class/dmi/id/product_name')),
    pathExists(at('proc/xen')),
    readTrimmed(at('sys/hypervisor/type')),
    pathExists(at('.dockerenv')),
    pathExists(at('run/.containerenv')),
    readTrimmed(at('run/systemd/container')),
  ]);
  return { dmiVendor, dmiProduct, procXen, sysHypervisorType, dockerenv, containerenv, systemdContainer };
}

/** The hypervisor DMI names, or null when DMI describes real hardware (or nothing). */
export function hypervisorFromDmi(vendor: string | null, product: string | null): string | null {
  const v = vendor ?? '';
  const p = product ?? '';
  if (/^VMware/i.test(v) || /^VMware/i.test(p)) return 'VMware';
  if (/^QEMU$/i.test(v) || /^KVM$/i.test(p) || /^Standard PC/i.test(p) || /^OpenStack (Nova|Compute)/i.test(p)) return 'QEMU/KVM';
  if (/^Microsoft Corporation$/i.test(v) && /^Virtual Machine$/i.test(p)) return 'Microsoft Hyper-V';
  if (/^Xen$/i.test(v)) return 'Xen';
  if (/^innotek GmbH$/i.test(v) || /^VirtualBox$/i.test(p)) return 'VirtualBox';
  // EC2 bare-metal instances (*.metal) say Amazon EC2 too, but nothing runs beneath them.
  if (/^Amazon EC2$/i.test(v) && !/\.metal$/i.test(p)) return 'Amazon EC2';
  if (/^Google$/i.test(v) || /^Google Compute Engine$/i.test(p)) return 'Google Compute Engine';
  if (/^Parallels/i.test(v)) return 'Parallels';
  return null;
}

function containerFrom(evidence: HypervisorEvidence): string | null {
  if (evidence.systemdContainer !== null) return evidence.systemdContainer;
  if (evidence.containerenv) return 'podman';
  if (evidence.dockerenv) return 'docker';
  return null;
}

export function identifyOuterHypervisor(evidence: HypervisorEvidence, cpu: CpuInfo): OuterHypervisorFacts {
  const xen = evidence.procXen || evidence.sysHypervisorType?.toLowerCase() === 'xen';
  return {
    cpuFlag: cpu.flags.includes('hypervisor'),
    name: hypervisorFromDmi(evidence.dmiVendor, evidence.dmiProduct) ?? (xen ? 'Xen' : null),
    dmiVendor: evidence.dmiVendor,
    dmiProduct: evidence.dmiProduct,
    xen,
    container: containerFrom(evidence),
  };
}

export async function probeOuterHypervisor(root: string, cpu: CpuInfo): Promise<OuterHypervisorFacts> {
  return identifyOuterHypervisor(await readHypervisorEvidence(root), cpu);
}
