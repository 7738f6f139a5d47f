/**
 * The live-host assertions (test/support/host-invariants.ts) fed recorded
 * hosts: they hold on a bare-metal host whose KVM works, on the field
 * report's VM whose KVM guests hang, on a PVM host — and they fail for a
 * verdict that is wrong, so the live tests that use them can fail.
 */
import { describe, expect, it } from 'vitest';
import { parseConfigText } from '../../config/load-config.js';
import { probeHost } from '../../hypervisor/host/probe.js';
import { decideVirtType, judgeKvm } from '../../hypervisor/virt-type/decision.js';
import type { SelfTestOutcome } from '../../hypervisor/virt-type/self-test.js';
import { hostInvariantViolations, type HostEvidence } from '../support/host-invariants.js';
import { fixtureRoot } from './fixture-hosts.js';

const LIBVIRT = parseConfigText('', 'defaults.conf').values.libvirt;
const PASSED: SelfTestOutcome = { passed: true, detail: 'the test guest reached user space under KVM in 0.9 s', durationMs: 900 };
const HUNG: SelfTestOutcome = { passed: false, detail: 'the test guest printed no marker on its serial console within 20 s although libvirt reported it running', durationMs: 20_000 };

async function evidence(host: string, selfTest: SelfTestOutcome | null): Promise<HostEvidence> {
  const probe = await probeHost({ root: fixtureRoot(host), arch: 'x86_64' });
  const verdict = judgeKvm({ probe, selfTest });
  return { probe, selfTest, verdict, decision: decideVirtType({ libvirt: LIBVIRT, verdict, hostArch: probe.arch }) };
}

describe('the live-host assertions on recorded hosts', () => {
  it('hold on a bare-metal Intel host whose KVM works: KVM, before and after its self-test', async () => {
    for (const selfTest of [null, PASSED]) {
      const host = await evidence('intel-kvm-nested', selfTest);
      expect(hostInvariantViolations(host)).toEqual([]);
      expect(host.decision.effective).toBe('kvm');
    }
    expect(hostInvariantViolations(await evidence('amd-kvm-nested', PASSED))).toEqual([]);
  });

  it("hold on the field report's VM (vmx exposed, kvm_intel, guests hang): TCG with the self-test as the reason", async () => {
    const host = await evidence('vmware-vmx-exposed', HUNG);
    expect(hostInvariantViolations(host)).toEqual([]);
    expect(host.decision.effective).toBe('qemu');
    expect(host.verdict.reasons.map((r) => r.code)).toEqual(['KVM_SELFTEST_FAILED']);
  });

  it('hold on a PVM host like the build machines: TCG with PVM named', async () => {
    const host = await evidence('pvm-host', HUNG);
    expect(hostInvariantViolations(host)).toEqual([]);
    expect(host.verdict.reasons.map((r) => r.code)).toContain('KVM_MODULE_PVM');
    expect(hostInvariantViolations(await evidence('container-no-kvm', null))).toEqual([]);
  });

  it('fail for a wrong verdict or decision', async () => {
    const pvm = await evidence('pvm-host', HUNG);
    expect(hostInvariantViolations({ ...pvm, verdict: { usable: true, reasons: [] } })).toContain('a PVM host names kvm_pvm (KVM_MODULE_PVM)');
    const field = await evidence('vmware-vmx-exposed', HUNG);
    expect(hostInvariantViolations({ ...field, verdict: { usable: true, reasons: [] } })).toContain('KVM_SELFTEST_FAILED is a reason exactly when the self-test failed');
    const bare = await evidence('intel-kvm-nested', PASSED);
    expect(hostInvariantViolations({ ...bare, decision: { ...bare.decision, effective: 'qemu' } })).toContain('usable KVM gives virt type kvm');
    expect(hostInvariantViolations({ ...pvm, selfTest: PASSED })).toContain('an ordinary guest does not boot under kvm_pvm');
  });
});
