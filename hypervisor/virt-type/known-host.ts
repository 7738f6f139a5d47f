/**
 * What is known of KVM on this host and the one decision that follows: the
 * probe, the tools, this boot's self-test, the verdict on all of it, and the
 * virt type of the host's instances. `judgeHost` is where the host's virt
 * type is decided; the assembly (compute-host.ts) and `knownHost` (the same
 * without libvirt) both come through it, and everything else reads
 * `virtType` instead of deciding again. Per-instance decisions (another
 * guest architecture, an image's img_hv_type, `run --virt-type`) are the
 * driver's, at spawn.
 */
import type { NovaletConfig } from '../../config/novalet-config.js';
import type { KvmVerdict } from '../../messaging/contracts/kvm-verdict.js';
import type { HostProbe } from '../host/facts.js';
import { probeHost } from '../host/probe.js';
import { probeHostTools, type HostTools } from '../host/tools.js';
import { decideVirtType, judgeKvm, type VirtTypeDecision } from './decision.js';
import type { SelfTestResult } from './self-test.js';
import { planSelfTest, recordedSelfTest, SELF_TEST_NOT_RUN } from './self-test-plan.js';

export interface KnownHost {
  probe: HostProbe;
  tools: HostTools;
  selfTest: SelfTestResult | null;
  /** Why there is no self-test result (a phrase), when there is none. */
  selfTestMissing: string | null;
  /** True when the self-test applies here and has not run in this boot: KVM is unproven. */
  selfTestPending: boolean;
  verdict: KvmVerdict;
  /** The virt type of the host's instances (of its own architecture, asking for nothing special), and why. */
  virtType: VirtTypeDecision;
}

/** The verdict on the evidence, and the host's virt type under the configuration: decided here only. */
export function judgeHost(config: NovaletConfig, probe: HostProbe, selfTest: SelfTestResult | null): { verdict: KvmVerdict; virtType: VirtTypeDecision } {
  const verdict = judgeKvm({ probe, selfTest });
  return { verdict, virtType: decideVirtType({ libvirt: config.libvirt, verdict, hostArch: probe.arch }) };
}

/** What is known of KVM here without libvirt and without booting anything: the probe and this boot's recorded self-test. */
export async function knownHost(config: NovaletConfig): Promise<KnownHost> {
  const [probe, tools] = await Promise.all([probeHost(), probeHostTools()]);
  const plan = planSelfTest(config, probe, tools);
  const selfTest = await recordedSelfTest(plan);
  const pending = plan.emulator !== null && selfTest === null;
  const missing = plan.missing ?? (pending ? SELF_TEST_NOT_RUN : null);
  return { probe, tools, selfTest, selfTestMissing: missing, selfTestPending: pending, ...judgeHost(config, probe, selfTest) };
}
