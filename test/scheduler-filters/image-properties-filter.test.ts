/**
 * nova's ImagePropertiesFilter: architecture, hypervisor type and VM mode
 * against a host's supported_instances, canonicalised as nova's fields do,
 * and img_hv_requested_version as distutils' VersionPredicate reads it.
 * The example host (docs/messages.md) runs TCG: [x86_64, qemu, hvm], libvirt
 * 9.2.0 (hypervisor_version 9002000).
 */
import { describe, expect, it } from 'vitest';
import { imagePropertiesFilter } from '../../scheduler-filters/filters/image-properties-filter.js';
import { versionSatisfies, versionString } from '../../scheduler-filters/filters/version-predicate.js';
import { hostView, requestSpec } from '../support/host-views.js';

const filter = imagePropertiesFilter(null);
const tcgHost = hostView();
const kvmHost = hostView({ supported_instances: [['x86_64', 'kvm', 'hvm'], ['x86_64', 'qemu', 'hvm']], effective_virt_type: 'kvm' });
const image = (imageProperties: Record<string, string>) => requestSpec({ imageProperties });

describe('ImagePropertiesFilter', () => {
  it('passes every host when the image names none of the properties', () => {
    expect(filter.hostPasses(tcgHost, image({}))).toBeNull();
    expect(filter.hostPasses(tcgHost, image({ hw_machine_type: 'pc' }))).toBeNull();
  });

  it('keeps a KVM-only image off a host whose KVM does not work (it advertises only qemu), saying what the host supports', () => {
    expect(filter.hostPasses(tcgHost, image({ img_hv_type: 'kvm' }))).toBe('the image asks for kvm; the host supports [x86_64, qemu, hvm]');
    expect(filter.hostPasses(kvmHost, image({ img_hv_type: 'kvm' }))).toBeNull();
    expect(filter.hostPasses(kvmHost, image({ img_hv_type: 'qemu' }))).toBeNull();
  });

  it("canonicalises as nova's fields: case, amd64 → x86_64, i386 → i686, hv → hvm, xapi → xen", () => {
    expect(filter.hostPasses(kvmHost, image({ img_hv_type: 'KVM', hw_architecture: 'AMD64', hw_vm_mode: 'hv' }))).toBeNull();
    expect(filter.hostPasses(tcgHost, image({ hw_architecture: 'i386' }))).toBe('the image asks for i686; the host supports [x86_64, qemu, hvm]');
    expect(filter.hostPasses(tcgHost, image({ img_hv_type: 'xapi' }))).toBe('the image asks for xen; the host supports [x86_64, qemu, hvm]');
  });

  it('needs every property named in one entry of supported_instances', () => {
    expect(filter.hostPasses(kvmHost, image({ hw_architecture: 'x86_64', img_hv_type: 'kvm', hw_vm_mode: 'hvm' }))).toBeNull();
    expect(filter.hostPasses(kvmHost, image({ hw_architecture: 'aarch64', img_hv_type: 'kvm' }))).toBe('the image asks for aarch64, kvm; the host supports [x86_64, kvm, hvm], [x86_64, qemu, hvm]');
  });

  it('takes image_properties_default_architecture for an image that names no architecture', () => {
    expect(imagePropertiesFilter('aarch64').hostPasses(tcgHost, image({}))).toBe('the image asks for aarch64; the host supports [x86_64, qemu, hvm]');
    expect(imagePropertiesFilter('aarch64').hostPasses(tcgHost, image({ hw_architecture: 'x86_64' }))).toBeNull();
  });

  it('removes a host that advertises no supported instances when the image names anything', () => {
    expect(filter.hostPasses(hostView({ supported_instances: [] }), image({ hw_vm_mode: 'hvm' }))).toBe('the image asks for hvm and the host advertises no supported instances');
    expect(filter.hostPasses(hostView({ supported_instances: [] }), image({}))).toBeNull();
  });

  it('refuses, naming it, a property value nova does not know', () => {
    expect(filter.hostPasses(tcgHost, image({ hw_architecture: 'x86' }))).toBe("the image's hw_architecture 'x86' is not an architecture nova knows");
    expect(filter.hostPasses(tcgHost, image({ img_hv_type: 'tcg' }))).toBe("the image's img_hv_type 'tcg' is not a hypervisor type nova knows");
    expect(filter.hostPasses(tcgHost, image({ hw_vm_mode: 'pvh' }))).toBe("the image's hw_vm_mode 'pvh' is not a VM mode nova knows");
  });

  it('img_hv_requested_version against the hypervisor version, when both are there', () => {
    expect(filter.hostPasses(tcgHost, image({ img_hv_type: 'qemu', img_hv_requested_version: '>= 9.0' }))).toBeNull();
    expect(filter.hostPasses(tcgHost, image({ img_hv_type: 'qemu', img_hv_requested_version: '>= 8.0, < 10.0' }))).toBeNull();
    expect(filter.hostPasses(tcgHost, image({ img_hv_type: 'qemu', img_hv_requested_version: '>= 10.0' }))).toBe("its hypervisor version 9.2.0 does not satisfy the image's img_hv_requested_version '>= 10.0'");
    expect(filter.hostPasses(tcgHost, image({ img_hv_type: 'qemu', img_hv_requested_version: '=> 9' }))).toBe("the image's img_hv_requested_version cannot be checked: '=> 9' is not a comparison such as '>= 6.0'");
    // Only with a property the filter checks: the version alone asks nothing (nova's "if not any(checked_img_props)").
    expect(filter.hostPasses(tcgHost, image({ img_hv_requested_version: '>= 10.0' }))).toBeNull();
  });
});

describe("distutils' VersionPredicate and oslo's convert_version_to_str", () => {
  it('convert_version_to_str: three digits a part, leading zeros dropped', () => {
    expect([9002000, 6000000, 1002003, 10000].map(versionString)).toEqual(['9.2.0', '6.0.0', '1.2.3', '10.0']);
  });

  it('StrictVersion ordering: numbers, a missing patch is 0, a pre-release before its release, a before b', () => {
    const cases: [string, string, boolean][] = [
      ['9.2.0', '== 9.2', true],
      ['9.2.0', '> 9.1.9', true],
      ['9.2.0', '!= 9.2.0', false],
      ['9.2.0', '< 9.10', true],
      ['9.2a1', '< 9.2', true],
      ['9.2a2', '< 9.2b1', true],
      ['9.2b1', '<= 9.2b1', true],
    ];
    for (const [version, required, satisfied] of cases) expect([version, required, versionSatisfies(version, required)]).toEqual([version, required, { satisfied }]);
  });

  it('says why where distutils raises', () => {
    expect(versionSatisfies('10', '>= 1.0')).toEqual({ error: "'10' is not a version distutils reads (major.minor[.patch])" });
    expect(versionSatisfies('9.2.0', '>= 9')).toEqual({ error: "'9' is not a version distutils reads (major.minor[.patch])" });
    expect(versionSatisfies('9.2.0', ' ')).toEqual({ error: "'' is not a comparison such as '>= 6.0'" });
  });
});
