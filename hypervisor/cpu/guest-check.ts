import type { LibvirtSection } from '../../config/novalet-config.js';
import { effectiveCpuMode } from '../../config/cpu-compatibility-rules.js';
import { customCpuXml, hostModelCpuXml } from './api-xml.js';
import { chooseGuestCpu, GuestCpuError, hypervisorDefaultCpu, virtTypeWords, type GuestCpuChoice } from './guest-choice.js';
import type { GuestCpu } from './guest.js';
import { parseDomainCapabilities, type DomainCapabilities } from '../libvirt/domain-capabilities.js';
import type { LibvirtConnection } from '../libvirt/connection.js';
import { CompareCpu } from '../libvirt/constants.js';
import { isLibvirtError } from '../libvirt/error.js';
import type { EffectiveVirtType } from '../virt-type/decision.js';

/**
 * The guest CPU for instances of the host's architecture, checked with
 * libvirt itself: its domain capabilities for the effective virt type (which
 * models and modes are usable), then its CPU comparison for the flags
 * `cpu_model_extra_flags` requires — a model can be usable while a flag added
 * to it is not (avx512f under TCG), which libvirt would otherwise only
 * report when the first instance fails to start.
 */

export interface GuestCpuCheckInput {
  connection: LibvirtConnection;
  libvirt: LibvirtSection;
  virtType: EffectiveVirtType;
  fellBack: boolean;
  emulator: string;
  arch: string;
  /** The domain capabilities for this emulator, arch and virt type, when the caller has them already. */
  domainCapabilities?: DomainCapabilities;
}

export interface CheckedGuestCpu extends GuestCpuChoice {
  /** null for cpu_mode = none, which is not checked against them. */
  domainCapabilities: DomainCapabilities | null;
}

/** libvirt's "Host CPU does not provide required features: a, b" as names. */
function missingFeatures(message: string): string[] {
  const list = /required features:\s*(.+)$/i.exec(message)?.[1] ?? '';
  return list.split(',').map((f) => f.trim()).filter(Boolean);
}

/** The chosen CPU with the required flags, for libvirt's comparison; null for host-passthrough (QEMU itself says what the host lacks). */
function comparedCpuXml(cpu: GuestCpu, caps: DomainCapabilities, required: string[]): string | null {
  const flags = required.map((name) => ({ name, policy: 'require' }));
  if (cpu.mode === 'custom') return cpu.model ? customCpuXml(cpu.model, null, flags) : null;
  if (cpu.mode === 'host-model') return hostModelCpuXml(caps, flags);
  return null;
}

async function unavailableFlags(input: GuestCpuCheckInput, cpu: GuestCpu, caps: DomainCapabilities): Promise<string[]> {
  const required = cpu.features.filter((f) => f.policy === 'require').map((f) => f.name);
  const xml = required.length > 0 ? comparedCpuXml(cpu, caps, required) : null;
  if (!xml) return [];
  const target = { emulator: input.emulator, arch: input.arch, virttype: input.virtType };
  try {
    await input.connection.compareHypervisorCpu(xml, target, CompareCpu.FAIL_INCOMPATIBLE);
    return [];
  } catch (err) {
    if (!isLibvirtError(err)) throw err;
    const missing = new Set(missingFeatures(err.libvirtMessage));
    if (missing.size === 0) throw err;
    return required.filter((name) => missing.has(name));
  }
}

export async function checkGuestCpu(input: GuestCpuCheckInput): Promise<CheckedGuestCpu> {
  if (effectiveCpuMode(input.libvirt) === 'none') return { ...hypervisorDefaultCpu(input.libvirt), domainCapabilities: null };
  const caps =
    input.domainCapabilities ??
    parseDomainCapabilities(await input.connection.getDomainCapabilities({ emulatorbin: input.emulator, arch: input.arch, virttype: input.virtType }));
  const choice = chooseGuestCpu({ libvirt: input.libvirt, virtType: input.virtType, fellBack: input.fellBack, domainCapabilities: caps });
  const cpu = choice.cpu;
  if (!cpu) return { ...choice, domainCapabilities: caps };
  const unavailable = await unavailableFlags(input, cpu, caps);
  if (unavailable.length === 0) return { ...choice, domainCapabilities: caps };

  const flags = unavailable.map((f) => `+${f}`).join(', ');
  const what = cpu.mode === 'custom' ? `${cpu.model} guests` : 'guests';
  const under = `under ${virtTypeWords(input.virtType)} here`;
  if (!input.fellBack) {
    throw new GuestCpuError(
      'CPU_FLAG_UNAVAILABLE',
      `[libvirt] cpu_model_extra_flags asks for ${flags}, which ${what} cannot have ${under}.`,
      input.virtType === 'qemu' ? 'Remove it from cpu_model_extra_flags: TCG does not emulate it.' : 'Remove it from cpu_model_extra_flags, or run these instances on hosts whose CPUs have it.',
    );
  }
  const dropped = new Set(unavailable);
  const note = `[libvirt] cpu_model_extra_flags: ${flags} cannot be given ${under}, to which instances fall back because KVM is not usable; instances run without ${unavailable.length === 1 ? 'it' : 'them'}.`;
  return {
    ...choice,
    cpu: { ...cpu, features: cpu.features.filter((f) => !(f.policy === 'require' && dropped.has(f.name))) },
    substitution: choice.substitution ? `${choice.substitution} ${note}` : note,
    domainCapabilities: caps,
  };
}
