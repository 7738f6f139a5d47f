/**
 * `novalet validate`'s lines for every captured kind of host, with the
 * configuration's defaults unless a case says otherwise. The tools (QEMU,
 * qemu-img, libvirt) are given as present so that each case shows what the
 * host's virtualization alone decides.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../config/load-config.js';
import type { NovaletConfig } from '../../config/novalet-config.js';
import { probeHost } from '../../hypervisor/host/probe.js';
import type { HostTools } from '../../hypervisor/host/tools.js';
import { formatValidationReport, validateHost, type GuestCpuFinding, type ValidationReport } from '../../hypervisor/validation/host-checks.js';
import { judgeKvm, selfTestNotNeeded } from '../../hypervisor/virt-type/decision.js';
import { judgeHost } from '../../hypervisor/virt-type/known-host.js';
import type { SelfTestResult } from '../../hypervisor/virt-type/self-test.js';
import { fixtureRoot } from './fixture-hosts.js';

const ALL_TOOLS: HostTools = {
  qemuEmulators: { x86_64: '/usr/bin/qemu-system-x86_64', aarch64: '/usr/bin/qemu-system-aarch64' },
  qemuImg: '/usr/bin/qemu-img',
  libvirt: { loadable: true, version: '9.0.0', error: null },
};

function config(text = ''): NovaletConfig {
  const dir = mkdtempSync(path.join(tmpdir(), 'novalet-hv-'));
  const file = path.join(dir, 'novalet.conf');
  writeFileSync(file, text);
  return loadConfig({ configFiles: [file] }).values;
}

/** What libvirt would say of the default guest CPU; fixture hosts have no libvirt to ask. */
const HOST_MODEL: GuestCpuFinding = { kind: 'given', setting: 'cpu_mode = host-model (Skylake-Client-IBRS)', substitution: null };

interface FixtureOptions {
  tools?: HostTools;
  selfTest?: SelfTestResult | null;
  guestCpu?: GuestCpuFinding;
}

/** As compute-host.ts assembles it: the verdict on the probe and this boot's self-test. */
async function validateFixture(host: string, configText = '', options: FixtureOptions = {}): Promise<ValidationReport> {
  const probe = await probeHost({ root: fixtureRoot(host), arch: 'x86_64' });
  const values = config(configText);
  const selfTest = options.selfTest ?? null;
  const notNeeded = selfTestNotNeeded(values.libvirt, probe);
  const pending = notNeeded === null && selfTest === null;
  return validateHost({
    probe,
    ...judgeHost(values, probe, selfTest),
    tools: options.tools ?? ALL_TOOLS,
    config: values,
    selfTest,
    selfTestMissing: notNeeded ?? (pending ? 'no guest has been booted under KVM in this boot' : null),
    selfTestPending: pending,
    guestCpu: options.guestCpu ?? HOST_MODEL,
  });
}

const PASSED: SelfTestResult = { passed: true, detail: 'the test guest reached user space under KVM in 0.9 s', durationMs: 900, bootId: 'b', qemuVersion: 'q', at: '2026-11-24T23:00:00.000Z', cached: true };

function results(report: ValidationReport): Record<string, string> {
  return Object.fromEntries(report.checks.map((c) => [c.name, c.result]));
}

const ESSENTIALS_PASS = { 'QEMU system emulators': 'PASS', 'qemu-img': 'PASS', 'libvirt library': 'PASS' };

describe('validate on captured hosts', () => {
  it('intel-kvm-nested with a passed self-test: every KVM check passes and instances run under KVM', async () => {
    const report = await validateFixture('intel-kvm-nested', '', { selfTest: PASSED });
    expect(results(report)).toEqual({
      'Hardware virtualization': 'PASS',
      '/dev/kvm exists': 'PASS',
      '/dev/kvm accessible': 'PASS',
      'KVM API': 'PASS',
      'KVM module': 'PASS',
      'KVM self-test': 'PASS',
      'Nested virtualization': 'PASS',
      'Outer hypervisor': 'PASS',
      ...ESSENTIALS_PASS,
      'Configured virt_type': 'PASS',
      'CPU options': 'PASS',
    });
    expect(report.effective_virt_type).toBe('kvm');
    expect(report.can_run_instances).toBe(true);
    expect(report.summary).toBe('Instances will run here under KVM hardware virtualization.');
    const text = formatValidationReport(report);
    expect(text).toMatch(/PASS\s+Hardware virtualization\s+: Intel VT-x \(vmx\) in \/proc\/cpuinfo/);
    expect(text).toMatch(/PASS\s+KVM module\s+: kvm_intel \(Intel VT-x\)/);
    expect(text).toMatch(/PASS\s+Nested virtualization\s+: enabled \(kvm_intel nested=Y\)/);
    expect(text).toMatch(/PASS\s+Outer hypervisor\s+: none: bare metal/);
  });

  it('amd-kvm-nested: AMD-V and kvm_amd with nested=1', async () => {
    const report = await validateFixture('amd-kvm-nested');
    const text = formatValidationReport(report);
    expect(text).toMatch(/PASS\s+Hardware virtualization\s+: AMD-V \(svm\)/);
    expect(text).toMatch(/PASS\s+KVM module\s+: kvm_amd/);
    expect(text).toMatch(/PASS\s+Nested virtualization\s+: enabled \(kvm_amd nested=1\)/);
    expect(report.effective_virt_type).toBe('kvm');
  });

  it('vmware-no-vmx (the field report): no VT-x exposed, instances fall back to TCG with ESXi advice', async () => {
    const report = await validateFixture('vmware-no-vmx');
    expect(results(report)).toMatchObject({
      'Hardware virtualization': 'FAIL',
      '/dev/kvm exists': 'FAIL',
      '/dev/kvm accessible': 'FAIL',
      'KVM API': 'FAIL',
      'KVM module': 'FAIL',
      'Outer hypervisor': 'WARN',
      'Configured virt_type': 'WARN',
      ...ESSENTIALS_PASS,
    });
    const hw = report.checks.find((c) => c.name === 'Hardware virtualization');
    expect(hw?.hint).toContain('Expose hardware assisted virtualization to the guest OS');
    expect(report.checks.find((c) => c.name === 'Outer hypervisor')?.detail).toBe('this host is a virtual machine under VMware');
    expect(report.effective_virt_type).toBe('qemu');
    expect(report.summary).toMatch(/^Instances will run here under TCG software emulation/);
  });

  it('vmware-no-vmx without a fallback: cannot run, with the classic fault', async () => {
    const report = await validateFixture('vmware-no-vmx', '[libvirt]\nfallback_virt_type =\n');
    expect(report.can_run_instances).toBe(false);
    expect(report.effective_virt_type).toBeNull();
    expect(report.summary).toMatch(/^Instances cannot run on this host: could not find capabilities for domaintype=kvm: /);
    expect(report.summary).toContain('Expose hardware assisted virtualization');
  });

  it('vmware-vmx-exposed: KVM usable inside VMware; the outer hypervisor is a warning only', async () => {
    const report = await validateFixture('vmware-vmx-exposed');
    expect(results(report)['Outer hypervisor']).toBe('WARN');
    expect(results(report)['Nested virtualization']).toBe('WARN');
    expect(report.effective_virt_type).toBe('kvm');
  });

  it('xen-guest: no hardware virtualization under Xen', async () => {
    const report = await validateFixture('xen-guest');
    expect(report.checks.find((c) => c.name === 'Outer hypervisor')?.detail).toContain('Xen');
    expect(report.checks.find((c) => c.name === 'Hardware virtualization')?.hint).toContain('nestedhvm=1');
    expect(report.effective_virt_type).toBe('qemu');
  });

  it('container-no-kvm: vmx present but the device is not passed in', async () => {
    const report = await validateFixture('container-no-kvm');
    expect(results(report)['Hardware virtualization']).toBe('PASS');
    const exists = report.checks.find((c) => c.name === '/dev/kvm exists');
    expect(exists?.result).toBe('FAIL');
    expect(exists?.hint).toContain('--device /dev/kvm');
    expect(report.effective_virt_type).toBe('qemu');
  });

  it('pvm-host (like these build machines): the device answers, but kvm_pvm is named and TCG is used', async () => {
    const report = await validateFixture('pvm-host');
    expect(results(report)).toMatchObject({
      'Hardware virtualization': 'FAIL',
      '/dev/kvm exists': 'PASS',
      '/dev/kvm accessible': 'PASS',
      'KVM API': 'PASS',
      'KVM module': 'FAIL',
      'Nested virtualization': 'WARN',
    });
    expect(report.checks.find((c) => c.name === 'KVM module')?.detail).toBe('kvm_pvm (PVM: runs only guests built for PVM, not ordinary guests)');
    expect(report.kvm.reasons.map((r) => r.code).sort()).toEqual(['KVM_MODULE_PVM', 'NO_HW_VIRT_IN_VM']);
    expect(report.effective_virt_type).toBe('qemu');
  });

  it('kvm-no-access: the kvm group hint', async () => {
    const report = await validateFixture('kvm-no-access');
    const access = report.checks.find((c) => c.name === '/dev/kvm accessible');
    expect(access?.result).toBe('FAIL');
    expect(access?.detail).toContain('EACCES');
    expect(access?.hint).toContain('kvm');
  });

  it("shows libvirt's answer on the CPU options: given (PASS), given with a substitution (WARN), refused (FAIL), not asked (WARN, never PASS)", async () => {
    const kvm = await validateFixture('intel-kvm-nested', '[libvirt]\ncpu_mode = host-passthrough\n', { guestCpu: { kind: 'given', setting: 'cpu_mode = host-passthrough', substitution: null } });
    expect(kvm.checks.find((c) => c.name === 'CPU options')).toMatchObject({ result: 'PASS', detail: 'cpu_mode = host-passthrough: instances get cpu_mode = host-passthrough under virt type kvm' });
    expect(kvm.can_run_instances).toBe(true);
    const substitution = '[libvirt] cpu_mode = host-passthrough needs KVM …; instances get cpu_mode = host-model (EPYC) instead.';
    const fallback = await validateFixture('pvm-host', '[libvirt]\ncpu_mode = host-passthrough\n', { guestCpu: { kind: 'given', setting: 'cpu_mode = host-model (EPYC)', substitution } });
    expect(fallback.checks.find((c) => c.name === 'CPU options')).toMatchObject({ result: 'WARN', detail: `cpu_mode = host-passthrough: instances get cpu_mode = host-model (EPYC) under virt type qemu. ${substitution}` });
    expect(fallback.can_run_instances).toBe(true);
    const refused = await validateFixture('pvm-host', '[libvirt]\nvirt_type = qemu\ncpu_mode = custom\ncpu_models = Haswell\n', { guestCpu: { kind: 'refused', message: '[libvirt] cpu_models = Haswell: none is usable under TCG software emulation here.' } });
    expect(refused.checks.find((c) => c.name === 'CPU options')).toMatchObject({ result: 'FAIL', detail: 'cpu_mode = custom, cpu_models = Haswell: [libvirt] cpu_models = Haswell: none is usable under TCG software emulation here.' });
    expect(refused.can_run_instances).toBe(false);
    expect(refused.summary).toMatch(/^Instances cannot run on this host: CPU options: /);
    const unasked = await validateFixture('pvm-host', '[libvirt]\nvirt_type = qemu\ncpu_mode = custom\ncpu_models = Haswell\n', { guestCpu: { kind: 'not-checked', why: 'libvirt cannot be asked: no libvirt here' } });
    expect(unasked.checks.find((c) => c.name === 'CPU options')).toMatchObject({ result: 'WARN', detail: 'cpu_mode = custom, cpu_models = Haswell: not checked: libvirt cannot be asked: no libvirt here' });
  });

  it('KVM that the probe finds usable but no guest has proven: unproven, said in the last line, with --self-test to settle it', async () => {
    const report = await validateFixture('vmware-vmx-exposed');
    expect(report.kvm.usable).toBe(true);
    expect(report.kvm_unproven).toBe(true);
    expect(report.checks.find((c) => c.name === 'KVM self-test')).toMatchObject({ result: 'WARN', detail: 'KVM is unproven: no guest has been booted under KVM in this boot' });
    expect(report.checks.find((c) => c.name === 'KVM self-test')?.hint).toContain('novalet validate --self-test');
    expect(report.summary).not.toContain('Instances will run here under KVM');
    expect(report.summary).toMatch(/^KVM is unproven here: .*Instances will run under KVM if the KVM self-test passes; if it fails, they fall back to TCG software emulation .*Run `novalet validate --self-test`/);
    expect(report.can_run_instances).toBe(true);
    const noFallback = await validateFixture('vmware-vmx-exposed', '[libvirt]\nfallback_virt_type =\n');
    expect(noFallback.summary).toContain('if it fails, they cannot run here');
    // Once the self-test has passed in this boot, KVM is proven.
    const proven = await validateFixture('vmware-vmx-exposed', '', { selfTest: PASSED });
    expect(proven.kvm_unproven).toBe(false);
    expect(proven.summary).toBe('Instances will run here under KVM hardware virtualization.');
  });

  it('on a host that is not x86 there is no vmx/svm to look for: no hardware-virtualization FAIL, as the verdict', async () => {
    const probe = await probeHost({ root: fixtureRoot('intel-kvm-nested'), arch: 'aarch64' });
    const values = config('');
    const report = validateHost({ probe, ...judgeHost(values, probe, PASSED), tools: ALL_TOOLS, config: values, selfTest: PASSED, selfTestMissing: null, selfTestPending: false, guestCpu: HOST_MODEL });
    expect(report.checks.map((c) => c.name)).not.toContain('Hardware virtualization');
    expect(report.checks.filter((c) => c.result === 'FAIL')).toEqual([]);
  });

  it('cannot run instances without a QEMU emulator for the host architecture, or without qemu-img or libvirt', async () => {
    const noX86 = await validateFixture('intel-kvm-nested', '', { tools: { ...ALL_TOOLS, qemuEmulators: { aarch64: '/usr/bin/qemu-system-aarch64' } } });
    expect(results(noX86)['QEMU system emulators']).toBe('FAIL');
    expect(noX86.can_run_instances).toBe(false);
    expect(noX86.summary).toMatch(/^Instances cannot run on this host: QEMU system emulators: found aarch64 but none for this host's architecture x86_64/);
    const noImg = await validateFixture('intel-kvm-nested', '', { tools: { ...ALL_TOOLS, qemuImg: null } });
    expect(noImg.can_run_instances).toBe(false);
    const noLibvirt = await validateFixture('intel-kvm-nested', '', {
      tools: { ...ALL_TOOLS, libvirt: { loadable: false, version: null, error: 'libvirt.so.0: cannot open shared object file' } },
    });
    expect(results(noLibvirt)['libvirt library']).toBe('FAIL');
    expect(noLibvirt.can_run_instances).toBe(false);
  });

  it('shows the self-test of this boot: a failed one makes KVM unusable even where the probe found it fine', async () => {
    const failed: SelfTestResult = { ...PASSED, passed: false, detail: 'the test guest printed no marker on its serial console within 20 s', durationMs: 20000 };
    const report = await validateFixture('intel-kvm-nested', '', { selfTest: failed });
    const check = report.checks.find((c) => c.name === 'KVM self-test');
    expect(check?.result).toBe('FAIL');
    expect(check?.detail).toBe('the test guest printed no marker on its serial console within 20 s (in this boot, 2026-11-24T23:00:00.000Z)');
    expect(report.kvm.reasons.map((r) => r.code)).toEqual(['KVM_SELFTEST_FAILED']);
    expect(report.effective_virt_type).toBe('qemu');
    const passed = await validateFixture('intel-kvm-nested', '', { selfTest: PASSED });
    expect(passed.checks.find((c) => c.name === 'KVM self-test')?.result).toBe('PASS');
    expect(passed.effective_virt_type).toBe('kvm');
    const qemu = await validateFixture('intel-kvm-nested', '[libvirt]\nvirt_type = qemu\n');
    expect(qemu.checks.find((c) => c.name === 'KVM self-test')?.detail).toBe('not needed: virt_type = qemu');
  });
});
