/**
 * Start-up CPU rules. First nova's `_check_cpu_compatibility`
 * (nova/virt/libvirt/driver.py), with nova's own messages:
 *
 * 1. virt_type other than kvm/qemu with cpu_mode set (and not 'none'):
 *    "Config requested an explicit CPU model, but the current libvirt
 *    hypervisor '<virt_type>' does not support selecting CPU models"
 * 2. cpu_mode other than custom with cpu_models set:
 *    "The cpu_models option is not required when cpu_mode!=custom"
 * 3. cpu_mode = custom without cpu_models:
 *    "The cpu_models option is required when cpu_mode=custom"
 *
 * then the syntax of cpu_model_extra_flags (`flag`, `+flag` or `-flag`),
 * then novalet's own: virt_type lxc and parallels are refused, after nova's
 * rules so that nova's CPU rule still fires first. Each error points at the
 * file and line of the offending option.
 */

import { ConfigError, type ConfigErrorCode } from './config-error.js';
import { maskUrlCredentials } from './mask-credentials.js';
import { quoteForMessage } from './quote-for-message.js';
import type { CpuMode, LibvirtSection, NovaletConfig, SectionName, Setting } from './novalet-config.js';
import { splitList, valueAsText } from './value-types.js';

/** The origin of an option's value, or undefined when it is the default. */
export type OriginLookup = (section: SectionName, option: string) => Setting | undefined;

/**
 * nova's default CPU mode: `cpu_mode` when set, else host-model for kvm
 * and qemu, else none.
 */
export function effectiveCpuMode(values: NovaletConfig | Pick<LibvirtSection, 'virt_type' | 'cpu_mode'>): CpuMode {
  const libvirt = 'libvirt' in values ? values.libvirt : values;
  if (libvirt.cpu_mode !== null) return libvirt.cpu_mode;
  return libvirt.virt_type === 'kvm' || libvirt.virt_type === 'qemu' ? 'host-model' : 'none';
}

const CPU_FLAG = /^[+-]?[a-z0-9][a-z0-9_.-]*$/;

/** Throws ConfigError when the CPU settings break a rule. */
export function checkCpuCompatibility(values: NovaletConfig, originOf: OriginLookup): void {
  const { virt_type: virtType, cpu_mode: mode, cpu_models: models } = values.libvirt;
  const fail = (code: ConfigErrorCode, option: keyof LibvirtSection, problem: string, remedy?: string): never => {
    throw blame(code, option, values, originOf, problem, remedy);
  };

  if (virtType !== 'kvm' && virtType !== 'qemu' && mode !== null && mode !== 'none') {
    fail(
      'CONFIG_CPU_RULE',
      'cpu_mode',
      `Config requested an explicit CPU model, but the current libvirt hypervisor '${virtType}' does not support selecting CPU models.`,
      'Remove [libvirt] cpu_mode, or set [libvirt] virt_type = kvm or qemu.',
    );
  }
  if (mode !== 'custom' && models.length > 0) {
    fail(
      'CONFIG_CPU_RULE',
      'cpu_models',
      'The cpu_models option is not required when cpu_mode!=custom.',
      'Set [libvirt] cpu_mode = custom to use these models, or remove cpu_models.',
    );
  }
  if (mode === 'custom' && models.length === 0) {
    fail(
      'CONFIG_CPU_RULE',
      'cpu_mode',
      'The cpu_models option is required when cpu_mode=custom.',
      'Set [libvirt] cpu_models to a CPU model such as Nehalem, or choose another cpu_mode.',
    );
  }

  const flags = values.libvirt.cpu_model_extra_flags;
  const origin = originOf('libvirt', 'cpu_model_extra_flags');
  const written = origin ? splitList(origin.text) : flags;
  flags.forEach((flag, i) => {
    if (!CPU_FLAG.test(flag)) {
      fail(
        'CONFIG_CPU_RULE',
        'cpu_model_extra_flags',
        // Text taken from a secret option through $name is never quoted.
        origin?.secret ? `entry ${i + 1} is not a CPU flag (its text comes from a secret option).` : `${quoteForMessage(written[i] ?? flag)} is not a CPU flag.`,
        "Write each entry as flag, +flag or -flag, where flag is a name such as pcid or avx512f (letters, digits, '_', '.', '-').",
      );
    }
  });

  if (virtType === 'lxc' || virtType === 'parallels') {
    fail(
      'CONFIG_UNSUPPORTED',
      'virt_type',
      "novalet runs instances only through libvirt's QEMU driver; set [libvirt] virt_type = kvm or qemu.",
    );
  }
}

function blame(
  code: ConfigErrorCode,
  option: keyof LibvirtSection,
  values: NovaletConfig,
  originOf: OriginLookup,
  problem: string,
  remedy: string | undefined,
): ConfigError {
  const origin = originOf('libvirt', option);
  if (origin) {
    return new ConfigError({
      code,
      file: origin.file,
      line: origin.line,
      section: origin.section,
      option: origin.option,
      value: origin.secret ? maskUrlCredentials(origin.raw) : origin.raw,
      problem,
      remedy,
    });
  }
  const value = values.libvirt[option];
  return new ConfigError({
    code,
    section: 'libvirt',
    option,
    value: value === null ? '<None>' : valueAsText(value),
    problem,
    remedy,
  });
}
