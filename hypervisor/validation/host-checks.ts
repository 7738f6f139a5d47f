import type { NovaletConfig } from '../../config/novalet-config.js';
import { effectiveCpuMode } from '../../config/cpu-compatibility-rules.js';
import type { HostProbe, KvmReason, KvmVerdict } from '../host/facts.js';
import { hostPassthroughOutcome } from '../cpu/guest-choice.js';
import type { HostTools } from '../host/tools.js';
import { kvmDeviceWorks, type SelfTestResult } from '../virt-type/self-test.js';
import { describeOuterHypervisor, isVirtualMachine } from '../virt-type/kvm-reasons.js';
import { decideVirtType, type EffectiveVirtType } from '../virt-type/decision.js';

/**
 * `novalet validate`: checks in the manner of libvirt's
 * `virt-host-validate qemu`, one per line, each PASS, WARN or FAIL with a
 * hint, then what instances will run with here and why.
 */

export type CheckResult = 'PASS' | 'WARN' | 'FAIL';

export interface ValidationCheck {
  name: string;
  result: CheckResult;
  detail: string;
  hint: string | null;
}

export interface ValidationReport {
  checks: ValidationCheck[];
  kvm: KvmVerdict;
  virt_type: string;
  effective_virt_type: EffectiveVirtType | null;
  /** The last line: what instances will run with here, and why. */
  summary: string;
  /** Can this configuration run instances on this host (exit status 0). */
  can_run_instances: boolean;
}

export interface ValidationInput {
  probe: HostProbe;
  /** The verdict, with the self-test's evidence when there is some. */
  verdict: KvmVerdict;
  tools: HostTools;
  config: NovaletConfig;
  /** The KVM self-test of this boot, if it has run (validate never boots a guest itself). */
  selfTest?: SelfTestResult | null;
}

const pass = (name: string, detail: string): ValidationCheck => ({ name, result: 'PASS', detail, hint: null });
const warn = (name: string, detail: string, hint: string | null): ValidationCheck => ({ name, result: 'WARN', detail, hint });
const fail = (name: string, detail: string, hint: string | null): ValidationCheck => ({ name, result: 'FAIL', detail, hint });

function remedyOf(verdict: KvmVerdict, ...codes: string[]): string | null {
  const reason: KvmReason | undefined = verdict.reasons.find((r) => codes.includes(r.code));
  return reason ? reason.remedy : null;
}

function hardwareVirtualization({ probe, verdict }: ValidationInput): ValidationCheck {
  const name = 'Hardware virtualization';
  const flags = probe.cpu.flags;
  if (flags.includes('vmx')) return pass(name, 'Intel VT-x (vmx) in /proc/cpuinfo');
  if (flags.includes('svm')) return pass(name, 'AMD-V (svm) in /proc/cpuinfo');
  return fail(name, 'no vmx or svm flag in /proc/cpuinfo', remedyOf(verdict, 'NO_HW_VIRT_IN_VM', 'NO_HW_VIRT_BARE_METAL'));
}

function kvmDeviceExists({ probe, verdict }: ValidationInput): ValidationCheck {
  const name = '/dev/kvm exists';
  const dev = probe.kvmDevice;
  if (dev.exists && dev.isCharDevice) return pass(name, 'character device present');
  if (dev.exists) return fail(name, '/dev/kvm is there but is not a character device', remedyOf(verdict, 'KVM_DEVICE_NOT_CHAR'));
  return fail(name, '/dev/kvm is absent', remedyOf(verdict, 'KVM_DEVICE_MISSING'));
}

function kvmDeviceAccessible({ probe, verdict }: ValidationInput): ValidationCheck {
  const name = '/dev/kvm accessible';
  const dev = probe.kvmDevice;
  if (!dev.exists) return fail(name, 'not checked: /dev/kvm is absent', null);
  if (!dev.isCharDevice) return fail(name, 'not checked: /dev/kvm is not a character device', null);
  if (dev.accessible) return pass(name, 'opened read-write');
  return fail(
    name,
    `cannot open /dev/kvm read-write (${dev.openError ?? 'unknown error'})`,
    remedyOf(verdict, 'KVM_DEVICE_NOT_ACCESSIBLE', 'KVM_DEVICE_OPEN_FAILED'),
  );
}

function kvmApi({ probe, verdict }: ValidationInput): ValidationCheck {
  const name = 'KVM API';
  const dev = probe.kvmDevice;
  if (!dev.accessible || !dev.isCharDevice) return fail(name, 'not checked: /dev/kvm cannot be opened as KVM', null);
  if (dev.apiVersion !== 12) {
    return fail(name, `KVM_GET_API_VERSION answered ${dev.apiVersion ?? 'nothing'}, expected 12`, remedyOf(verdict, 'KVM_API_VERSION'));
  }
  if (!dev.createVm?.ok) {
    return fail(name, `API 12, but KVM_CREATE_VM failed (${dev.createVm?.error ?? 'not tried'})`, remedyOf(verdict, 'KVM_CREATE_VM_FAILED'));
  }
  const ext = dev.extensions;
  const limits = ext.maxVcpus !== null ? `, up to ${ext.maxVcpus} vCPUs per VM (${ext.nrVcpus ?? '?'} recommended)` : '';
  return pass(name, `API version 12, KVM_CREATE_VM works${limits}`);
}

function kvmModule({ probe, verdict }: ValidationInput): ValidationCheck {
  const name = 'KVM module';
  switch (probe.kvmModule.name) {
    case 'kvm_intel':
      return pass(name, 'kvm_intel (Intel VT-x)');
    case 'kvm_amd':
      return pass(name, 'kvm_amd (AMD-V)');
    case 'kvm_pvm':
      return fail(name, 'kvm_pvm (PVM: runs only guests built for PVM, not ordinary guests)', remedyOf(verdict, 'KVM_MODULE_PVM'));
    default:
      return fail(name, 'no KVM vendor module (kvm_intel, kvm_amd) is loaded', remedyOf(verdict, 'KVM_DEVICE_MISSING', 'KVM_NO_VENDOR_MODULE'));
  }
}

function selfTest({ probe, config, selfTest: result }: ValidationInput): ValidationCheck {
  const name = 'KVM self-test';
  if (result) {
    const when = `in this boot, ${result.at}`;
    if (result.passed) return pass(name, `${result.detail} (${when})`);
    return fail(name, `${result.detail} (${when})`, 'KVM does not really run guests here; instances fall back to fallback_virt_type.');
  }
  if (config.libvirt.virt_type !== 'kvm') return pass(name, `not needed: virt_type = ${config.libvirt.virt_type}`);
  if (!kvmDeviceWorks(probe)) return warn(name, 'not run: /dev/kvm does not answer as KVM', null);
  return warn(name, 'not run yet in this boot', 'It runs when novalet first launches an instance (novalet run, or the compute service); validate never boots a guest itself.');
}

function nesting({ probe }: ValidationInput): ValidationCheck {
  const name = 'Nested virtualization';
  const mod = probe.kvmModule;
  if (mod.name === null) return warn(name, 'unknown: no KVM vendor module is loaded', null);
  if (mod.nested === true) return pass(name, `enabled (${mod.name} nested=${mod.nestedRaw ?? ''})`);
  if (mod.nested === false) {
    return warn(
      name,
      `disabled (${mod.name} nested=${mod.nestedRaw ?? ''}): guests of this host cannot use KVM themselves`,
      `Only needed when guests run their own hypervisor: reload ${mod.name} with nested=1.`,
    );
  }
  return warn(name, `${mod.name} has no nested parameter`, null);
}

function outerHypervisor({ probe }: ValidationInput): ValidationCheck {
  const name = 'Outer hypervisor';
  const what = describeOuterHypervisor(probe);
  if (!isVirtualMachine(probe)) return pass(name, `none: ${what}`);
  return warn(
    name,
    `this host is ${what}`,
    'KVM here is nested virtualization: it works only when the hypervisor beneath exposes VT-x/AMD-V to this VM.',
  );
}

function qemuEmulators({ probe, tools }: ValidationInput): ValidationCheck {
  const name = 'QEMU system emulators';
  const arches = Object.keys(tools.qemuEmulators).sort();
  if (arches.length === 0) return fail(name, 'no qemu-system-* found in /usr/bin', 'Install qemu-system-x86 (and qemu-system-arm for Arm guests).');
  if (!tools.qemuEmulators[probe.arch]) {
    return fail(name, `found ${arches.join(', ')} but none for this host's architecture ${probe.arch}`, `Install the QEMU system emulator for ${probe.arch}.`);
  }
  return pass(name, arches.join(', '));
}

function qemuImg({ tools }: ValidationInput): ValidationCheck {
  const name = 'qemu-img';
  return tools.qemuImg ? pass(name, tools.qemuImg) : fail(name, 'qemu-img not found in /usr/bin', 'Install qemu-utils.');
}

function libvirtLibrary({ tools }: ValidationInput): ValidationCheck {
  const name = 'libvirt library';
  const lv = tools.libvirt;
  if (lv.loadable && lv.version) return pass(name, `libvirt.so.0 ${lv.version}`);
  return fail(name, `libvirt.so.0 cannot be used: ${lv.error ?? 'unknown error'}`, 'Install libvirt0 and libvirt-daemon-driver-qemu.');
}

function configuredVirtType(input: ValidationInput): ValidationCheck {
  const name = 'Configured virt_type';
  const decision = decideVirtType(input.config.libvirt, input.verdict);
  const configured = `virt_type = ${decision.configured}`;
  if (decision.effective === null) return fail(name, `${configured}: ${decision.reason}`, null);
  if (decision.fellBack) {
    return warn(name, `${configured}, but KVM is unusable here: instances run under TCG (fallback_virt_type = qemu)`, 'Fix the KVM reasons above, or set [libvirt] virt_type = qemu to make TCG explicit.');
  }
  return pass(name, `${configured}: ${decision.reason}`);
}

/**
 * The CPU setting against the virt type, as far as it can be judged without
 * libvirt: host-passthrough needs KVM. Models and flags are checked against
 * libvirt's domain capabilities when instances launch (and by `novalet
 * capabilities`), the same rules as hypervisor/cpu/guest-choice.ts.
 */
function cpuOptions(input: ValidationInput): ValidationCheck {
  const name = 'CPU options';
  const { libvirt } = input.config;
  const mode = effectiveCpuMode(libvirt);
  const decision = decideVirtType(libvirt, input.verdict);
  const effective = decision.effective;
  const models = libvirt.cpu_models.length ? `, cpu_models = ${libvirt.cpu_models.join(', ')}` : '';
  const flags = libvirt.cpu_model_extra_flags.length ? `, cpu_model_extra_flags = ${libvirt.cpu_model_extra_flags.join(', ')}` : '';
  const setting = `cpu_mode = ${mode}${libvirt.cpu_mode === null ? ' (default)' : ''}${models}${flags}`;
  const outcome = mode === 'host-passthrough' && effective !== null ? hostPassthroughOutcome(effective, decision.fellBack) : 'kept';
  if (outcome !== 'kept') {
    if (outcome === 'host-model') {
      return warn(
        name,
        `${setting}: host-passthrough needs KVM, and instances fall back to TCG because KVM is not usable; they get cpu_mode = host-model instead until KVM works`,
        'Make KVM usable here, or set [libvirt] cpu_mode = host-model to say what instances get.',
      );
    }
    return fail(
      name,
      `${setting}: host-passthrough needs KVM, but [libvirt] virt_type = qemu runs instances under TCG`,
      'Set [libvirt] cpu_mode = host-model, or cpu_mode = custom with a model QEMU can emulate (for example cpu_models = Westmere).',
    );
  }
  return pass(name, `${setting} for virt type ${effective ?? 'none'}`);
}

const CHECKS = [
  hardwareVirtualization,
  kvmDeviceExists,
  kvmDeviceAccessible,
  kvmApi,
  kvmModule,
  selfTest,
  nesting,
  outerHypervisor,
  qemuEmulators,
  qemuImg,
  libvirtLibrary,
  configuredVirtType,
  cpuOptions,
];

/** Checks whose failure means no instance can run here, whatever KVM does. */
const ESSENTIAL = new Set(['QEMU system emulators', 'qemu-img', 'libvirt library', 'Configured virt_type', 'CPU options']);

export function validateHost(input: ValidationInput): ValidationReport {
  const checks = CHECKS.map((check) => check(input));
  const decision = decideVirtType(input.config.libvirt, input.verdict);
  const blocking = checks.filter((c) => c.result === 'FAIL' && ESSENTIAL.has(c.name));
  const canRun = decision.effective !== null && blocking.length === 0;
  return {
    checks,
    kvm: input.verdict,
    virt_type: decision.configured,
    effective_virt_type: decision.effective,
    summary: summarize(decision.effective, decision.reason, blocking),
    can_run_instances: canRun,
  };
}

function summarize(effective: EffectiveVirtType | null, reason: string, blocking: ValidationCheck[]): string {
  if (effective === null) return `Instances cannot run on this host: ${reason}`;
  if (blocking.length > 0) {
    return `Instances cannot run on this host: ${blocking.map((c) => `${c.name}: ${c.detail}`).join('; ')}.`;
  }
  if (effective === 'kvm') return 'Instances will run here under KVM hardware virtualization.';
  return `Instances will run here under TCG software emulation (virt type qemu): ${reason}`;
}

/** The text form: one line per check, then the summary. */
export function formatValidationReport(report: ValidationReport): string {
  const width = Math.max(...report.checks.map((c) => c.name.length));
  const lines = report.checks.map((c) => {
    const hint = c.hint ? ` (hint: ${c.hint})` : '';
    return `${c.result.padEnd(4)}  ${c.name.padEnd(width)} : ${c.detail}${hint}`;
  });
  lines.push('', report.summary);
  return lines.join('\n');
}
