import type { NovaletConfig } from '../../config/novalet-config.js';
import { effectiveCpuMode } from '../../config/cpu-compatibility-rules.js';
import { printable } from '../../config/quote-for-message.js';
import type { EffectiveVirtType, KvmReasonCode, KvmVerdict } from '../../messaging/contracts/kvm-verdict.js';
import { isX86 } from '../host/cpuinfo.js';
import type { HostProbe } from '../host/facts.js';
import { kvmDeviceAnswers } from '../host/kvm-device.js';
import { KVM_STABLE_API_VERSION } from '../host/kvm-ioctls.js';
import type { HostTools } from '../host/tools.js';
import type { VirtTypeDecision } from '../virt-type/decision.js';
import { describeOuterHypervisor, isVirtualMachine } from '../virt-type/kvm-reasons.js';
import type { SelfTestResult } from '../virt-type/self-test.js';

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
  /** This boot's KVM self-test, when it has run. */
  self_test: { passed: boolean; detail: string; at: string } | null;
  /** True when the probe finds KVM usable but no guest has been booted under it in this boot. */
  kvm_unproven: boolean;
  virt_type: string;
  effective_virt_type: EffectiveVirtType | null;
  /** The last line: what instances will run with here, and why. */
  summary: string;
  /** Can this configuration run instances on this host (exit status 0). */
  can_run_instances: boolean;
}

/** What libvirt's domain capabilities said of the configured guest CPU, for the virt type instances run with. */
export type GuestCpuFinding =
  | { kind: 'given'; setting: string; substitution: string | null }
  | { kind: 'refused'; message: string }
  | { kind: 'not-checked'; why: string };

export interface ValidationInput {
  probe: HostProbe;
  /** The verdict, with the self-test's evidence when there is some. */
  verdict: KvmVerdict;
  /** The host's virt type, as judged once on that evidence (virt-type/known-host.ts). */
  virtType: VirtTypeDecision;
  tools: HostTools;
  config: NovaletConfig;
  /** The KVM self-test of this boot, if it has run. */
  selfTest: SelfTestResult | null;
  /** Why there is no self-test result (compute-host.ts), when there is none. */
  selfTestMissing: string | null;
  /** The self-test applies here and has not run in this boot. */
  selfTestPending: boolean;
  guestCpu: GuestCpuFinding;
}

const pass = (name: string, detail: string): ValidationCheck => ({ name, result: 'PASS', detail, hint: null });
const warn = (name: string, detail: string, hint: string | null): ValidationCheck => ({ name, result: 'WARN', detail, hint });
const fail = (name: string, detail: string, hint: string | null): ValidationCheck => ({ name, result: 'FAIL', detail, hint });

function remedyOf(verdict: KvmVerdict, ...codes: KvmReasonCode[]): string | null {
  return verdict.reasons.find((r) => codes.includes(r.code))?.remedy ?? null;
}

const decisionOf = (input: ValidationInput): VirtTypeDecision => input.virtType;

/** x86 only, as the verdict: elsewhere hardware virtualization shows as a working /dev/kvm, checked below. */
function hardwareVirtualization({ probe, verdict }: ValidationInput): ValidationCheck | null {
  if (!isX86(probe.arch)) return null;
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
  if (kvmDeviceAnswers(dev)) {
    const ext = dev.extensions;
    const limits = ext.maxVcpus !== null ? `, up to ${ext.maxVcpus} vCPUs per VM (${ext.nrVcpus ?? '?'} recommended)` : '';
    return pass(name, `API version ${KVM_STABLE_API_VERSION}, KVM_CREATE_VM works${limits}`);
  }
  if (dev.apiVersion !== KVM_STABLE_API_VERSION) {
    return fail(name, `KVM_GET_API_VERSION answered ${dev.apiVersion ?? 'nothing'}, expected ${KVM_STABLE_API_VERSION}`, remedyOf(verdict, 'KVM_API_VERSION'));
  }
  return fail(name, `API ${KVM_STABLE_API_VERSION}, but KVM_CREATE_VM failed (${dev.createVm?.error ?? 'not tried'})`, remedyOf(verdict, 'KVM_CREATE_VM_FAILED'));
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

function selfTest({ config, selfTest: result, selfTestMissing, selfTestPending }: ValidationInput): ValidationCheck {
  const name = 'KVM self-test';
  if (result) {
    const when = `in this boot, ${result.at}`;
    if (result.passed) return pass(name, `${result.detail} (${when})`);
    return fail(name, `${result.detail} (${when})`, 'KVM does not really run guests here; instances fall back to fallback_virt_type.');
  }
  if (selfTestPending) return warn(name, `KVM is unproven: ${selfTestMissing ?? 'no guest has been booted under KVM in this boot'}`, SELF_TEST_HINT);
  // Not needed: KVM is not wanted, or there is no KVM to test.
  const why = selfTestMissing ?? `not needed: virt_type = ${config.libvirt.virt_type}`;
  return config.libvirt.virt_type === 'kvm' ? warn(name, why, null) : pass(name, why);
}

const SELF_TEST_HINT = 'Run `novalet validate --self-test` to boot a test guest under KVM now; the compute service and `novalet run` run it before their first instance.';

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
  const decision = decisionOf(input);
  const configured = `virt_type = ${decision.configured}`;
  if (decision.effective === null) return fail(name, `${configured}: ${decision.reason}`, null);
  if (decision.fellBack) {
    return warn(name, `${configured}, but KVM is unusable here: instances run under TCG (fallback_virt_type = qemu)`, 'Fix the KVM reasons above, or set [libvirt] virt_type = qemu to make TCG explicit.');
  }
  return pass(name, `${configured}: ${decision.reason}`);
}

/**
 * The CPU options as libvirt's domain capabilities judge them for the virt
 * type instances run with (cpu/guest-check.ts, as every launch does):
 * never PASS for what libvirt was not asked.
 */
function cpuOptions(input: ValidationInput): ValidationCheck {
  const name = 'CPU options';
  const { libvirt } = input.config;
  const mode = effectiveCpuMode(libvirt);
  const effective = decisionOf(input).effective;
  const models = libvirt.cpu_models.length ? `, cpu_models = ${libvirt.cpu_models.join(', ')}` : '';
  const flags = libvirt.cpu_model_extra_flags.length ? `, cpu_model_extra_flags = ${libvirt.cpu_model_extra_flags.join(', ')}` : '';
  const setting = `cpu_mode = ${mode}${libvirt.cpu_mode === null ? ' (default)' : ''}${models}${flags}`;
  const finding = input.guestCpu;
  if (finding.kind === 'not-checked') return warn(name, `${setting}: not checked: ${finding.why}`, null);
  if (finding.kind === 'refused') return fail(name, `${setting}: ${finding.message}`, null);
  const given = `${setting}: instances get ${finding.setting} under virt type ${effective ?? 'none'}`;
  if (finding.substitution) return warn(name, `${given}. ${finding.substitution}`, null);
  return pass(name, given);
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
  const checks = CHECKS.map((check) => check(input)).filter((check): check is ValidationCheck => check !== null);
  const decision = decisionOf(input);
  const blocking = checks.filter((c) => c.result === 'FAIL' && ESSENTIAL.has(c.name));
  const canRun = decision.effective !== null && blocking.length === 0;
  const unproven = decision.effective === 'kvm' && input.selfTestPending;
  const selfTest = input.selfTest;
  return {
    checks,
    kvm: input.verdict,
    self_test: selfTest === null ? null : { passed: selfTest.passed, detail: selfTest.detail, at: selfTest.at },
    kvm_unproven: unproven,
    virt_type: decision.configured,
    effective_virt_type: decision.effective,
    summary: summarize(decision, blocking, unproven, input.config.libvirt.fallback_virt_type),
    can_run_instances: canRun,
  };
}

function summarize(decision: VirtTypeDecision, blocking: ValidationCheck[], unproven: boolean, fallback: string): string {
  const { effective, reason } = decision;
  if (effective === null) return `Instances cannot run on this host: ${reason}`;
  if (blocking.length > 0) {
    const why = blocking.map((c) => `${c.name}: ${c.detail}`).join('; ');
    return `Instances cannot run on this host: ${why}${why.endsWith('.') ? '' : '.'}`;
  }
  if (effective === 'kvm' && unproven) {
    const otherwise = fallback === 'qemu' ? 'if it fails, they fall back to TCG software emulation ([libvirt] fallback_virt_type = qemu)' : 'if it fails, they cannot run here (fallback_virt_type is empty)';
    return `KVM is unproven here: /dev/kvm answers, but only a guest booted under KVM shows that KVM really runs guests, and none has been in this boot. Instances will run under KVM if the KVM self-test passes; ${otherwise}. Run \`novalet validate --self-test\` to find out now.`;
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
  // Details quote configuration, files and libvirt: no control character reaches the terminal.
  return lines.map(printable).join('\n');
}
