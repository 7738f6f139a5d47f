/**
 * Parsing /proc/cpuinfo text into CpuInfo.
 *
 * x86 cpuinfo repeats `vendor_id`, `model name`, `cpu family`, `model`,
 * `stepping` and `flags` in one block per `processor`; the first value of
 * each key is the first processor's. Other architectures are read
 * "reasonably": aarch64 gives `Features` (taken as flags), `CPU implementer`
 * (a vendor, named when known), `CPU architecture` (as family), `CPU part`
 * (as model) and `CPU revision` (as stepping). Missing fields are null.
 */
import type { CpuInfo } from './facts.js';

/** ARM's `CPU implementer` codes (arch/arm64/include/asm/cputype.h). */
const ARM_IMPLEMENTERS: Record<number, string> = {
  0x41: 'ARM',
  0x42: 'Broadcom',
  0x43: 'Cavium',
  0x46: 'Fujitsu',
  0x48: 'HiSilicon',
  0x4e: 'NVIDIA',
  0x50: 'APM',
  0x51: 'Qualcomm',
  0x61: 'Apple',
  0x6d: 'Microsoft',
  0xc0: 'Ampere',
};

/** First value of each key, and how many `processor` entries there are. */
function readFields(text: string): { first: Map<string, string>; processors: number } {
  const first = new Map<string, string>();
  let processors = 0;
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const key = line.slice(0, colon).trim();
    const value = line.slice(colon + 1).trim();
    if (key === '') continue;
    if (key === 'processor') processors += 1;
    if (!first.has(key)) first.set(key, value);
  }
  return { first, processors };
}

/** A decimal or 0x-hex integer, else null. */
function parseInteger(value: string | undefined): number | null {
  if (value === undefined) return null;
  if (/^\d+$/.test(value)) return Number.parseInt(value, 10);
  if (/^0x[0-9a-f]+$/i.test(value)) return Number.parseInt(value.slice(2), 16);
  return null;
}

function nonEmpty(value: string | undefined): string | null {
  return value === undefined || value === '' ? null : value;
}

function armVendor(implementer: string | undefined): string | null {
  const code = parseInteger(implementer);
  if (code === null) return nonEmpty(implementer);
  return ARM_IMPLEMENTERS[code] ?? implementer ?? null;
}

export function parseCpuInfo(text: string): CpuInfo {
  const { first, processors } = readFields(text);
  const flagText = first.get('flags') ?? first.get('Features') ?? '';
  return {
    vendor: nonEmpty(first.get('vendor_id')) ?? armVendor(first.get('CPU implementer')),
    // Older arm64 kernels put the model in a `Processor` line; POWER in `cpu`.
    modelName: nonEmpty(first.get('model name')) ?? nonEmpty(first.get('Processor')) ?? nonEmpty(first.get('cpu')),
    family: parseInteger(first.get('cpu family')) ?? parseInteger(first.get('CPU architecture')),
    model: parseInteger(first.get('model')) ?? parseInteger(first.get('CPU part')),
    stepping: parseInteger(first.get('stepping')) ?? parseInteger(first.get('CPU revision')),
    logicalCpus: processors,
    flags: flagText.split(/\s+/).filter((flag) => flag !== ''),
  };
}

/** The hardware virtualization flag the CPU shows: vmx (Intel VT-x), svm (AMD-V), or null. */
export function hardwareVirtualizationFlag(cpu: CpuInfo): 'vmx' | 'svm' | null {
  if (cpu.flags.includes('vmx')) return 'vmx';
  if (cpu.flags.includes('svm')) return 'svm';
  return null;
}

/** 32 or 64 for the x86 family's architecture names (as uname, libvirt and Debian spell them), null for any other. */
export function x86WordSize(arch: string): 32 | 64 | null {
  if (/^(x86_64|amd64)$/.test(arch)) return 64;
  if (/^(i[3-6]86|x86)$/.test(arch)) return 32;
  return null;
}

/** Whether the architecture is x86 (32 or 64 bit): where vmx/svm show hardware virtualization in cpuinfo. */
export function isX86(arch: string): boolean {
  return x86WordSize(arch) !== null;
}
