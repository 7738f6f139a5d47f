import type { LibvirtSection, LoadedConfig } from '../../config/novalet-config.js';
import { NovaletError } from '../../config/novalet-error.js';
import { effectiveCpuMode } from '../../config/cpu-compatibility-rules.js';
import { closeNames, featureSpelling, knownX86Features, knownX86Models } from './names.js';
import { isX86 } from '../host/cpuinfo.js';
import { guestCpu, parseExtraFlag, type GuestCpu } from './guest.js';
import type { CpuModelCapability, DomainCapabilities } from '../libvirt/domain-capabilities.js';
import type { EffectiveVirtType } from '../virt-type/decision.js';

/**
 * The guest CPU for instances of the host's architecture, checked against
 * libvirt's domain capabilities for the effective virt type: nova's
 * cpu_mode / cpu_models / cpu_model_extra_flags semantics, with the checks
 * nova leaves to the first failed boot done at start-up instead.
 *
 * - cpu_models: the first model usable here, case-insensitively as nova
 *   matches them; a name libvirt does not know names the ones it does; when
 *   none is usable, the error names the usable ones.
 * - host-passthrough under TCG is refused when virt_type = qemu was chosen;
 *   when TCG is the fallback from an unusable KVM, the guest gets host-model
 *   instead, and `substitution` says so — refusing would defeat the fallback.
 * - When TCG is the fallback and none of cpu_models is usable under it, the
 *   guest gets host-model likewise.
 */

export class GuestCpuError extends NovaletError {}

export interface GuestCpuChoiceInput {
  libvirt: LibvirtSection;
  /** What instances of the host's architecture run with. */
  virtType: EffectiveVirtType;
  /** True when virtType is TCG only because KVM is unusable. */
  fellBack: boolean;
  /** Domain capabilities for that virt type and the host's architecture. */
  domainCapabilities: DomainCapabilities;
  /** Feature names libvirt knows; libvirt's x86 cpu_map unless given. */
  knownFeatures?: ReadonlySet<string>;
}

export interface GuestCpuChoice {
  /** null: libvirt's and QEMU's default CPU (cpu_mode = none). */
  cpu: GuestCpu | null;
  /** The CPU setting in use, as an operator would write it. */
  setting: string;
  /** When the setting differs from what the configuration says, which is used instead and why; else null. */
  substitution: string | null;
}

export function virtTypeWords(virtType: EffectiveVirtType): string {
  return virtType === 'kvm' ? 'KVM' : 'TCG software emulation';
}

/** Model names worth offering: aliases rather than their -vN versions, when libvirt lists both. */
function offered(models: CpuModelCapability[]): string[] {
  const names = models.map((m) => m.name);
  const plain = names.filter((n) => !/-v\d+$/.test(n));
  return plain.length > 0 ? plain : names;
}

function listed(names: string[]): string {
  return names.length > 0 ? names.join(', ') : '(none)';
}

function blockedBy(model: CpuModelCapability): string {
  return model.blockers && model.blockers.length > 0 ? ` (it lacks ${model.blockers.join(', ')})` : '';
}

/** The error for a cpu_model_extra_flags entry libvirt does not know; `where` is "file:line: " or empty. */
function unknownFlag(flag: string, arch: string, known: ReadonlySet<string>, where = ''): GuestCpuError {
  const { name, policy } = parseExtraFlag(flag);
  const spelled = featureSpelling(name, known);
  const sign = /^[+-]/.test(flag) ? (policy === 'disable' ? '-' : '+') : '';
  return new GuestCpuError(
    'CPU_FLAG_UNKNOWN',
    `${where}[libvirt] cpu_model_extra_flags: '${flag}' is not a CPU feature libvirt knows for ${arch} (its cpu_map).`,
    spelled ? `Did you mean '${sign}${spelled}'? libvirt spells it ${spelled}.` : "Use libvirt's names from /usr/share/libvirt/cpu_map (e.g. pcid, avx2, sse4.2).",
  );
}

function checkFlagNames(input: GuestCpuChoiceInput): void {
  const arch = input.domainCapabilities.arch;
  if (!isX86(arch)) return;
  const known = input.knownFeatures ?? knownX86Features();
  for (const flag of input.libvirt.cpu_model_extra_flags) {
    if (!known.has(parseExtraFlag(flag).name)) throw unknownFlag(flag, arch, known);
  }
}

/**
 * The names in cpu_models and cpu_model_extra_flags against libvirt's
 * cpu_map, before any host is asked: a name libvirt does not know is a
 * mistake in the configuration on every host (exit status 2 in every
 * command), where a known model this host cannot give is this host's
 * business (the domain capabilities, later). x86 only, as libvirt's cpu_map
 * names only x86's features; models are matched without regard to case, as
 * nova and chooseCustom do. Errors point at the file and line.
 */
export function checkConfiguredCpuNames(
  loaded: Pick<LoadedConfig, 'values' | 'settings'> & Partial<Pick<LoadedConfig, 'secret'>>,
  hostArch: string,
  known: { models: readonly string[]; features: ReadonlySet<string> } | null = null,
): void {
  const libvirt = loaded.values.libvirt;
  const mode = effectiveCpuMode(libvirt);
  if (!isX86(hostArch) || mode === 'none') return;
  // Nothing named, nothing to read: most hosts, and validate's 0.5 s.
  if ((mode !== 'custom' || libvirt.cpu_models.length === 0) && libvirt.cpu_model_extra_flags.length === 0) return;
  const where = (option: string) => {
    const setting = loaded.settings.libvirt[option];
    return setting ? `${setting.file}:${setting.line}: ` : '';
  };
  let names = known;
  try {
    names ??= { models: knownX86Models(), features: knownX86Features() };
  } catch {
    // No cpu_map: libvirt is not installed, which validate reports; the domain capabilities check the names where there are any.
    return;
  }
  const { models, features } = names;
  // A value that took text from a secret ($transport_url) is named as written, never quoted or matched against.
  const secretly = (option: 'cpu_models' | 'cpu_model_extra_flags', what: string): GuestCpuError =>
    new GuestCpuError(
      option === 'cpu_models' ? 'CPU_MODEL_UNKNOWN' : 'CPU_FLAG_UNKNOWN',
      `${where(option)}[libvirt] ${option} = '${loaded.settings.libvirt[option]?.raw ?? ''}' (after substitution, which takes text from a secret option) names ${what} libvirt does not know for ${hostArch} (its cpu_map).`,
      option === 'cpu_models' ? 'Use a model `virsh cpu-models x86_64` lists, such as Nehalem.' : "Use libvirt's names from /usr/share/libvirt/cpu_map (e.g. pcid, avx2, sse4.2).",
    );
  if (mode === 'custom') {
    const lower = new Set(models.map((m) => m.toLowerCase()));
    for (const name of libvirt.cpu_models) {
      if (lower.has(name.toLowerCase())) continue;
      if (loaded.secret?.libvirt.cpu_models) throw secretly('cpu_models', 'a CPU model');
      const close = closeNames(name, models);
      throw new GuestCpuError(
        'CPU_MODEL_UNKNOWN',
        `${where('cpu_models')}[libvirt] cpu_models = ${libvirt.cpu_models.join(', ')}: '${name}' is not a CPU model libvirt knows for ${hostArch} (its cpu_map).`,
        close.length > 0 ? `Did you mean ${close.join(' or ')}?` : 'Use a model `virsh cpu-models x86_64` lists, such as Nehalem.',
      );
    }
  }
  for (const flag of libvirt.cpu_model_extra_flags) {
    if (features.has(parseExtraFlag(flag).name)) continue;
    if (loaded.secret?.libvirt.cpu_model_extra_flags) throw secretly('cpu_model_extra_flags', 'a CPU feature');
    throw unknownFlag(flag, hostArch, features, where('cpu_model_extra_flags'));
  }
}

function hostModelSetting(caps: DomainCapabilities): string {
  const model = caps.cpu.hostModel.model;
  return model ? `host-model (${model})` : 'host-model';
}

function hostModelInstead(input: GuestCpuChoiceInput, why: string): GuestCpuChoice {
  const caps = input.domainCapabilities;
  if (!caps.cpu.hostModel.supported) {
    throw new GuestCpuError(
      'CPU_MODE_UNSUPPORTED',
      `${why}, and host-model is not supported under ${virtTypeWords(input.virtType)} here either.`,
      `Set [libvirt] cpu_mode = custom with one of the usable models: ${listed(usableModels(caps))}.`,
    );
  }
  const base = guestCpu({ ...input.libvirt, cpu_mode: 'host-model', cpu_models: [] });
  return {
    cpu: base,
    setting: `cpu_mode = ${hostModelSetting(caps)}`,
    substitution: `${why}; instances get cpu_mode = ${hostModelSetting(caps)} instead, the CPU ${virtTypeWords(input.virtType)} can give here. They get the configured CPU again once KVM is usable.`,
  };
}

function chooseCustom(input: GuestCpuChoiceInput): GuestCpuChoice {
  const caps = input.domainCapabilities;
  const models = caps.cpu.custom.models;
  const byName = new Map(models.map((m) => [m.name.toLowerCase(), m] as const));
  const wanted = input.libvirt.cpu_models;
  const configured = `[libvirt] cpu_models = ${wanted.join(', ')}`;
  const under = `under ${virtTypeWords(input.virtType)} here`;
  const usable = usableModels(caps);
  const resolved: CpuModelCapability[] = [];
  for (const name of wanted) {
    const model = byName.get(name.toLowerCase());
    if (!model) {
      const close = closeNames(name, offered(models));
      throw new GuestCpuError(
        'CPU_MODEL_UNKNOWN',
        `${configured}: '${name}' is not a CPU model libvirt knows for ${caps.arch} with ${caps.path}. The models are: ${listed(offered(models))}.`,
        close.length > 0 ? `Did you mean ${close.join(' or ')}?` : `Use one of them; usable ${under}: ${listed(usable)}.`,
      );
    }
    resolved.push(model);
  }
  const chosen = resolved.find((m) => m.usable === 'yes');
  const unusable = resolved.filter((m) => m.usable !== 'yes');
  const whyNot = unusable.map((m) => `${m.name}${blockedBy(m)}`).join('; ');
  if (!chosen) {
    const why = `${configured}: none is usable ${under} (${whyNot})`;
    if (input.fellBack) return hostModelInstead(input, `${why}, to which instances fall back because KVM is not usable`);
    throw new GuestCpuError('CPU_MODEL_UNUSABLE', `${why}. The usable models are: ${listed(usable)}.`, 'Put one of them in [libvirt] cpu_models, or set [libvirt] cpu_mode = host-model.');
  }
  const cpu = guestCpu(input.libvirt, chosen.name);
  const setting = `cpu_mode = custom, model ${chosen.name}`;
  if (chosen === resolved[0]) return { cpu, setting, substitution: null };
  const because = input.fellBack ? ', to which instances fall back because KVM is not usable' : '';
  // Only the models listed before the chosen one were passed over.
  const skipped = resolved.slice(0, resolved.indexOf(chosen));
  return {
    cpu,
    setting,
    substitution: `${configured}: ${skipped.map((m) => `${m.name}${blockedBy(m)}`).join('; ')} ${skipped.length === 1 ? 'is' : 'are'} not usable ${under}${because}; instances get ${chosen.name}, the first usable one.`,
  };
}

/**
 * What becomes of cpu_mode = host-passthrough: kept under KVM; refused when
 * TCG is chosen outright (virt_type = qemu); host-model instead when TCG is
 * only the fallback from an unusable KVM. The one rule for launches and for
 * `novalet validate`.
 */
export function hostPassthroughOutcome(virtType: EffectiveVirtType, fellBack: boolean): 'kept' | 'refused' | 'host-model' {
  if (virtType === 'kvm') return 'kept';
  return fellBack ? 'host-model' : 'refused';
}

/** cpu_mode = none: libvirt and QEMU choose; nothing to check against domain capabilities. */
export function hypervisorDefaultCpu(libvirt: LibvirtSection): GuestCpuChoice {
  const flags = libvirt.cpu_model_extra_flags;
  return {
    cpu: null,
    setting: 'cpu_mode = none (the hypervisor default CPU)',
    // nova ignores the flags silently; say so.
    substitution: flags.length === 0 ? null : `[libvirt] cpu_model_extra_flags = ${flags.join(', ')} is ignored with cpu_mode = none, which leaves the CPU to the hypervisor (as nova does); set cpu_mode = host-model or custom to use them.`,
  };
}

export function chooseGuestCpu(input: GuestCpuChoiceInput): GuestCpuChoice {
  const mode = effectiveCpuMode(input.libvirt);
  const caps = input.domainCapabilities;
  if (mode === 'none') return hypervisorDefaultCpu(input.libvirt);
  checkFlagNames(input);

  if (mode === 'host-passthrough') {
    const outcome = hostPassthroughOutcome(input.virtType, input.fellBack);
    if (outcome !== 'kept') {
      const why = '[libvirt] cpu_mode = host-passthrough needs KVM: TCG software emulation cannot pass the host CPU through';
      if (outcome === 'host-model') return hostModelInstead(input, `${why}, and instances fall back to TCG because KVM is not usable`);
      const usable = usableModels(caps);
      throw new GuestCpuError(
        'CPU_MODE_NEEDS_KVM',
        `${why}, and [libvirt] virt_type = qemu runs every instance under TCG.`,
        `Set [libvirt] cpu_mode = host-model${caps.cpu.hostModel.model ? ` (here ${caps.cpu.hostModel.model})` : ''}, or custom with a usable model (${listed(usable)}); or virt_type = kvm on a host where KVM works.`,
      );
    }
    if (!caps.cpu.hostPassthrough.supported) {
      throw new GuestCpuError('CPU_MODE_UNSUPPORTED', `[libvirt] cpu_mode = host-passthrough is not supported by ${caps.path} under KVM here.`, 'Set [libvirt] cpu_mode = host-model.');
    }
    return { cpu: guestCpu(input.libvirt), setting: 'cpu_mode = host-passthrough', substitution: null };
  }

  if (mode === 'host-model') {
    if (!caps.cpu.hostModel.supported) {
      const usable = usableModels(caps);
      throw new GuestCpuError(
        'CPU_MODE_UNSUPPORTED',
        `[libvirt] cpu_mode = host-model is not supported by ${caps.path} under ${virtTypeWords(input.virtType)} here.`,
        `Set [libvirt] cpu_mode = custom with one of the usable models: ${listed(usable)}.`,
      );
    }
    return { cpu: guestCpu(input.libvirt), setting: `cpu_mode = ${hostModelSetting(caps)}`, substitution: null };
  }

  return chooseCustom(input);
}

/** The models usable under one virt type, as libvirt lists them (aliases rather than versions). */
export function usableModels(caps: DomainCapabilities): string[] {
  return offered(caps.cpu.custom.models.filter((m) => m.usable === 'yes'));
}
