import { describe, expect, it } from 'vitest';
import { CPU_TRAITS_MAPPING, cpuFeaturesToTraits, traitsForFeature } from '../../hypervisor/cpu/traits.js';
import { knownX86Features } from '../../hypervisor/cpu/definitions.js';

describe("nova's CPU traits (CPU_TRAITS_MAPPING)", () => {
  it('svm and vmx give the generic trait and the vendor-specific one', () => {
    expect(traitsForFeature('svm')).toEqual(['HW_CPU_X86_SVM', 'HW_CPU_X86_AMD_SVM']);
    expect(traitsForFeature('vmx')).toEqual(['HW_CPU_X86_VMX', 'HW_CPU_X86_INTEL_VMX']);
  });

  it("maps libvirt's names to nova's traits where the names differ", () => {
    expect(traitsForFeature('aes')).toEqual(['HW_CPU_X86_AESNI']);
    expect(traitsForFeature('pclmuldq')).toEqual(['HW_CPU_X86_CLMUL']);
    expect(traitsForFeature('fma')).toEqual(['HW_CPU_X86_FMA3']);
    expect(traitsForFeature('bmi1')).toEqual(['HW_CPU_X86_BMI']);
    expect(traitsForFeature('sha-ni')).toEqual(['HW_CPU_X86_SHA']);
    expect(traitsForFeature('vaes')).toEqual(['HW_CPU_X86_AVX512VAES']);
    expect(traitsForFeature('sse4.2')).toEqual(['HW_CPU_X86_SSE42']);
    expect(traitsForFeature('avx512-vpopcntdq')).toEqual(['HW_CPU_X86_AVX512VPOPCNTDQ']);
  });

  it('SSE3: nova\'s key sse3 and libvirt\'s name pni both give HW_CPU_X86_SSE3', () => {
    expect(traitsForFeature('sse3')).toEqual(['HW_CPU_X86_SSE3']);
    expect(traitsForFeature('pni')).toEqual(['HW_CPU_X86_SSE3']);
  });

  it('features nova does not map give no trait, whatever their name', () => {
    for (const feature of ['hypervisor', 'popcnt', 'lahf_lm', 'x2apic', 'no-such-feature', '', 'constructor', 'toString', '__proto__', 'hasOwnProperty']) {
      expect(traitsForFeature(feature)).toEqual([]);
    }
    expect(cpuFeaturesToTraits(['hypervisor', 'popcnt', 'constructor'])).toEqual([]);
  });

  it('a feature list gives its traits sorted, each once', () => {
    expect(cpuFeaturesToTraits(['svm', 'sse2', 'sse2', 'aes', 'pni', 'sse3', 'hypervisor'])).toEqual([
      'HW_CPU_X86_AESNI',
      'HW_CPU_X86_AMD_SVM',
      'HW_CPU_X86_SSE2',
      'HW_CPU_X86_SSE3',
      'HW_CPU_X86_SVM',
    ]);
  });

  it("holds nova's 41 features and 43 traits, each key a feature in libvirt's cpu_map but sse3 (libvirt's pni)", () => {
    const keys = Object.keys(CPU_TRAITS_MAPPING);
    expect(keys).toHaveLength(41);
    expect(new Set(Object.values(CPU_TRAITS_MAPPING).flat()).size).toBe(43);
    const known = knownX86Features();
    expect(keys.filter((key) => !known.has(key))).toEqual(['sse3']);
    expect(known.has('pni')).toBe(true);
  });
});
