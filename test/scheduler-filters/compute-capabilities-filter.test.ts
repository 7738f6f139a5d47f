/**
 * nova's ComputeCapabilitiesFilter on the example host of docs/messages.md
 * (QEMU 9.2.0, an AMD EPYC-Rome with aes avx avx2 sse4.2 x2apic, 4 vCPUs at
 * ratio 4.0, stats num_instances 1): scoping, nested scopes, unscoped keys,
 * other namespaces, and nova's operators on str() of the host's values.
 */
import { describe, expect, it } from 'vitest';
import { computeCapabilitiesFilter } from '../../scheduler-filters/filters/compute-capabilities-filter.js';
import { hostView, requestSpec } from '../support/host-views.js';

const host = hostView();
const passes = (extra_specs: Record<string, string>) => computeCapabilitiesFilter.hostPasses(host, requestSpec({}, { extra_specs }));

describe('ComputeCapabilitiesFilter', () => {
  it('passes a flavor without extra specs, and ignores namespaces other than capabilities', () => {
    expect(passes({})).toBeNull();
    expect(passes({ 'hw:cpu_policy': 'dedicated', 'trait:HW_CPU_X86_AVX512F': 'required', 'aggregate_instance_extra_specs:ssd': 'true' })).toBeNull();
  });

  it('matches capabilities: keys against str() of the host attribute', () => {
    expect(passes({ 'capabilities:hypervisor_type': 'QEMU' })).toBeNull();
    expect(passes({ 'capabilities:hypervisor_type': 's== QEMU' })).toBeNull();
    expect(passes({ 'capabilities:hypervisor_type': 'Xen' })).toBe("its hypervisor_type is 'QEMU', which does not satisfy capabilities:hypervisor_type='Xen'");
    expect(passes({ 'capabilities:hypervisor_version': '>= 9000000' })).toBeNull();
    expect(passes({ 'capabilities:vcpus_total': '= 8' })).toBe("its vcpus_total is '4', which does not satisfy capabilities:vcpus_total='= 8'");
    // A float attribute reads as Python prints it.
    expect(passes({ 'capabilities:cpu_allocation_ratio': 's== 4.0' })).toBeNull();
    expect(passes({ 'capabilities:cpu_allocation_ratio': '4' })).toBe("its cpu_allocation_ratio is '4.0', which does not satisfy capabilities:cpu_allocation_ratio='4'");
  });

  it('reads nested scopes into the JSON text of cpu_info, and into dicts', () => {
    expect(passes({ 'capabilities:cpu_info:vendor': 'AMD' })).toBeNull();
    expect(passes({ 'capabilities:cpu_info:features': '<in> avx2' })).toBeNull();
    expect(passes({ 'capabilities:cpu_info:features': '<all-in> aes sse4.2' })).toBeNull();
    expect(passes({ 'capabilities:cpu_info:features': '<in> avx512f' })).toBe("its cpu_info:features is '['aes', 'avx', 'avx2', 'sse4.2', 'x2apic']', which does not satisfy capabilities:cpu_info:features='<in> avx512f'");
    expect(passes({ 'capabilities:cpu_info:topology:cores': '>= 4' })).toBeNull();
    expect(passes({ 'capabilities:stats:num_instances': '== 1' })).toBeNull();
    // The whole cpu_info is its JSON text, as nova keeps it.
    expect(passes({ 'capabilities:cpu_info': '<in> "vendor": "AMD"' })).toBeNull();
  });

  it('fails a host that lacks a scoped capability, at any depth', () => {
    expect(passes({ 'capabilities:gpu_model': 'A100' })).toBe("it has no capability 'gpu_model' (extra spec capabilities:gpu_model)");
    expect(passes({ 'capabilities:cpu_info:microcode': '>= 1' })).toBe("it has no capability 'cpu_info:microcode' (extra spec capabilities:cpu_info:microcode)");
    // Below a value that is no dict (nor JSON text of one) there is nothing.
    expect(passes({ 'capabilities:hypervisor_type:x': 'QEMU' })).toBe("it has no capability 'hypervisor_type:x' (extra spec capabilities:hypervisor_type:x)");
    expect(passes({ 'capabilities:constructor': 'x' })).toBe("it has no capability 'constructor' (extra spec capabilities:constructor)");
  });

  it('takes an unscoped key only when the host has that attribute (or stat), as capabilities:<key>', () => {
    expect(passes({ hypervisor_type: 'QEMU' })).toBeNull();
    expect(passes({ hypervisor_type: 'Xen' })).toBe("its hypervisor_type is 'QEMU', which does not satisfy hypervisor_type='Xen'");
    expect(passes({ num_instances: '<= 0' })).toBe("its num_instances is '1', which does not satisfy num_instances='<= 0'");
    expect(passes({ io_workload: '== 0' })).toBeNull();
    expect(passes({ gpu_model: 'A100', constructor: 'x' })).toBeNull();
  });

  it('a requirement nova would raise on fails the host with why', () => {
    expect(passes({ 'capabilities:hypervisor_type': '>= 2' })).toBe(
      "The extra spec requirement '>= 2' cannot be evaluated against the host's value 'QEMU': 'QEMU' is not a number. nova raises here, so the host does not pass. Correct the flavor's extra spec (a numeric operator wants a number on both sides), or the host's value.",
    );
  });

  it("novalet's own attributes: effective_virt_type and traits", () => {
    expect(passes({ 'capabilities:effective_virt_type': 's== qemu' })).toBeNull();
    expect(passes({ 'capabilities:traits': '<in> HW_CPU_X86_AVX2' })).toBeNull();
    expect(computeCapabilitiesFilter.hostPasses(hostView({ effective_virt_type: null, supported_instances: [], cpu_models: {} }), requestSpec({}, { extra_specs: { effective_virt_type: 'kvm' } }))).toBe(
      "it has no capability 'effective_virt_type' (extra spec effective_virt_type)",
    );
  });
});
