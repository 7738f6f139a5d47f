/**
 * Whether the compute service takes builds: `up` when instances can run
 * here (KVM, or the TCG fallback), else `disabled` with nova's `AUTO: `
 * reason (as nova-compute disables itself), so that schedulers skip the
 * host and operators see why. The service still starts and reports. It
 * reads the host's virt type as the assembly decided it (ComputeHost.virtType).
 */
import type { ComputeHost } from '../hypervisor/compute-host.js';
import type { ServiceStatus } from '../messaging/contracts/capability-report.js';

type VirtTypeDecision = ComputeHost['virtType'];

export interface JudgedService {
  status: ServiceStatus;
  effective: 'kvm' | 'qemu' | null;
  /** Why that virt type (or why none): the decision's sentence. */
  reason: string;
  fellBack: boolean;
}

export function serviceStatus(decision: VirtTypeDecision): JudgedService {
  if (decision.effective === null) {
    return { status: { state: 'disabled', disabled_reason: `AUTO: ${decision.reason}` }, effective: null, reason: decision.reason, fellBack: false };
  }
  return { status: { state: 'up', disabled_reason: null }, effective: decision.effective, reason: decision.reason, fellBack: decision.fellBack };
}
