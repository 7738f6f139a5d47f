import { describe, expect, it } from 'vitest';
import { supportedInstances } from '../../hypervisor/instance/libvirt-driver.js';
import type { GuestCapabilities } from '../../hypervisor/libvirt/capabilities.js';

/** libvirt's guests as an x86_64 host with /dev/kvm lists them: kvm offered for x86_64 wherever the device opens. */
const guests: GuestCapabilities[] = [
  { osType: 'hvm', arch: 'x86_64', wordsize: 64, emulator: '/usr/bin/qemu-system-x86_64', machines: [], domainTypes: ['qemu', 'kvm'] },
  { osType: 'hvm', arch: 'i686', wordsize: 32, emulator: '/usr/bin/qemu-system-i386', machines: [], domainTypes: ['qemu', 'kvm'] },
  { osType: 'hvm', arch: 'aarch64', wordsize: 64, emulator: '/usr/bin/qemu-system-aarch64', machines: [], domainTypes: ['qemu'] },
  { osType: 'xen', arch: 'x86_64', wordsize: 64, emulator: null, machines: [], domainTypes: ['xen'] },
];
const KVM_UNUSABLE = { usable: false, reasons: [{ code: 'KVM_MODULE_PVM' as const, message: 'kvm_pvm.', remedy: 'x' }] };

describe("nova's supported_instances from libvirt's guests and the KVM verdict", () => {
  it('has no kvm entry where KVM is unusable, though libvirt lists kvm wherever /dev/kvm opens', () => {
    expect(supportedInstances(guests, 'x86_64', KVM_UNUSABLE)).toEqual([
      ['x86_64', 'qemu', 'hvm'],
      ['i686', 'qemu', 'hvm'],
      ['aarch64', 'qemu', 'hvm'],
    ]);
  });

  it('has kvm for the host architecture only where KVM is usable', () => {
    expect(supportedInstances(guests, 'x86_64', { usable: true, reasons: [] })).toEqual([
      ['x86_64', 'qemu', 'hvm'],
      ['x86_64', 'kvm', 'hvm'],
      ['i686', 'qemu', 'hvm'],
      ['aarch64', 'qemu', 'hvm'],
    ]);
  });
});
