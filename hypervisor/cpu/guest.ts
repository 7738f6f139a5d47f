import type { CpuMode, LibvirtSection } from '../../config/novalet-config.js';
import { effectiveCpuMode } from '../../config/cpu-compatibility-rules.js';

/**
 * The guest CPU a domain asks for, from `[libvirt] cpu_mode`, `cpu_models`
 * and `cpu_model_extra_flags`, with nova's meaning: `+flag` and `flag`
 * require a feature, `-flag` disables it; a custom model must be provided
 * exactly as named (match='exact', no fallback to another model).
 */

export interface GuestCpuFeature {
  name: string;
  policy: 'require' | 'disable';
}

export interface GuestCpu {
  mode: Exclude<CpuMode, 'none'>;
  /** Only for mode custom. */
  model: string | null;
  features: GuestCpuFeature[];
  /**
   * libvirt's check of a custom model against the host: 'partial' (the
   * default) for guests of the host's architecture; 'none' for emulated
   * ones, whose CPU has nothing to be compared with.
   */
  check?: 'partial' | 'none';
}

export function parseExtraFlag(flag: string): GuestCpuFeature {
  const lower = flag.toLowerCase();
  if (lower.startsWith('-')) return { name: lower.slice(1), policy: 'disable' };
  return { name: lower.startsWith('+') ? lower.slice(1) : lower, policy: 'require' };
}

/**
 * The CPU for a guest of the host's architecture; null means libvirt's
 * default (cpu_mode none). `model` is the custom model chosen (the first of
 * cpu_models unless the caller has picked a usable one).
 */
export function guestCpu(libvirt: LibvirtSection, model: string | null = libvirt.cpu_models[0] ?? null): GuestCpu | null {
  const mode = effectiveCpuMode(libvirt);
  if (mode === 'none') return null;
  return {
    mode,
    model: mode === 'custom' ? model : null,
    features: libvirt.cpu_model_extra_flags.map(parseExtraFlag),
  };
}
