/**
 * What must hold of the KVM verdict and the virt type on any host, given
 * what the probe and the self-test found there — a bare-metal host with
 * working KVM, a VM whose KVM guests hang (the field report's second case),
 * a PVM guest like the build machines. Tests of the live machine assert
 * these rather than this machine's answers; test/hypervisor/host-invariants.test.ts
 * feeds them recorded hosts to show they hold there too, and that they fail
 * for a wrong verdict.
 */
import type { KvmVerdict } from '../../messaging/contracts/kvm-verdict.js';
import { hardwareVirtualizationFlag, isX86 } from '../../hypervisor/host/cpuinfo.js';
import type { HostProbe } from '../../hypervisor/host/facts.js';
import { kvmDeviceAnswers } from '../../hypervisor/host/kvm-device.js';
import type { VirtTypeDecision } from '../../hypervisor/virt-type/decision.js';
import type { SelfTestOutcome } from '../../hypervisor/virt-type/self-test.js';

export interface HostEvidence {
  probe: HostProbe;
  /** The self-test's outcome in this boot, or null when it did not run. */
  selfTest: SelfTestOutcome | null;
  verdict: KvmVerdict;
  /** The host's virt type with nova's defaults: virt_type = kvm, fallback_virt_type = qemu. */
  decision: VirtTypeDecision;
}

/** Every statement that does not hold; empty when the verdict and the decision are what this evidence must give. */
export function hostInvariantViolations({ probe, selfTest, verdict, decision }: HostEvidence): string[] {
  const codes = verdict.reasons.map((r) => r.code);
  const has = (code: string) => codes.includes(code as (typeof codes)[number]);
  const broken: string[] = [];
  const expect = (holds: boolean, statement: string) => {
    if (!holds) broken.push(statement);
  };
  const x86 = isX86(probe.arch);
  const hardware = hardwareVirtualizationFlag(probe.cpu) !== null;
  const vendorModule = probe.kvmModule.name === 'kvm_intel' || probe.kvmModule.name === 'kvm_amd';

  expect(verdict.usable === (codes.length === 0), 'KVM is usable exactly when there is no reason against it');
  expect(new Set(codes).size === codes.length, 'each reason is given once');
  if (probe.kvmModule.name === 'kvm_pvm') {
    expect(has('KVM_MODULE_PVM'), 'a PVM host names kvm_pvm (KVM_MODULE_PVM)');
    if (selfTest !== null) expect(!selfTest.passed, 'an ordinary guest does not boot under kvm_pvm');
  }
  if (selfTest !== null) {
    expect(has('KVM_SELFTEST_FAILED') === !selfTest.passed, 'KVM_SELFTEST_FAILED is a reason exactly when the self-test failed');
  }
  if (x86 && !hardware) expect(has('NO_HW_VIRT_IN_VM') || has('NO_HW_VIRT_BARE_METAL'), 'an x86 CPU without vmx/svm is a reason');
  if (!kvmDeviceAnswers(probe.kvmDevice)) expect(!verdict.usable, 'a /dev/kvm that does not answer as KVM is not usable');
  const soundKvm = kvmDeviceAnswers(probe.kvmDevice) && vendorModule && (!x86 || hardware);
  if (soundKvm && (selfTest === null || selfTest.passed)) expect(verdict.usable, 'working KVM (vmx/svm, kvm_intel/kvm_amd, an answering /dev/kvm, no failed self-test) is usable');
  if (soundKvm && selfTest !== null && !selfTest.passed) {
    expect(codes.length === 1 && has('KVM_SELFTEST_FAILED'), 'where KVM looks sound but its guests hang, the self-test is the reason, alone');
  }

  if (verdict.usable) {
    expect(decision.effective === 'kvm' && !decision.fellBack, 'usable KVM gives virt type kvm');
  } else {
    expect(decision.effective === 'qemu' && decision.fellBack, 'unusable KVM falls back to TCG (fallback_virt_type = qemu)');
    for (const reason of verdict.reasons) expect(decision.reason.includes(reason.message.replace(/\.$/, '')), `the fallback's reason names ${reason.code}`);
  }
  return broken;
}
