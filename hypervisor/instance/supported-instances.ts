import type { SupportedInstance } from '../../messaging/contracts/capability-report.js';
import type { KvmVerdict } from '../../messaging/contracts/kvm-verdict.js';
import type { parseCapabilities } from '../libvirt/capabilities.js';

/**
 * nova's supported_instances: [arch, hv_type, 'hvm'] for every guest
 * architecture libvirt can run here and each virt type it can run it with —
 * never kvm where the verdict says KVM is unusable (libvirt lists kvm
 * wherever /dev/kvm opens), and never kvm for a foreign architecture.
 */
export function supportedInstances(guests: ReturnType<typeof parseCapabilities>['guests'], hostArch: string, verdict: KvmVerdict): SupportedInstance[] {
  const found: SupportedInstance[] = [];
  for (const guest of guests.filter((g) => g.osType === 'hvm')) {
    if (guest.domainTypes.includes('qemu')) found.push([guest.arch, 'qemu', 'hvm']);
    if (guest.domainTypes.includes('kvm') && guest.arch === hostArch && verdict.usable) found.push([guest.arch, 'kvm', 'hvm']);
  }
  return found;
}
