/**
 * nova's CPU traits: which placement traits (os-traits' HW_CPU_X86_*) a
 * compute host reports for the CPU features its guests can have.
 *
 * Source: nova/virt/libvirt/utils.py, CPU_TRAITS_MAPPING (libvirt feature
 * name → trait, or a pair of traits where nova keeps reporting the old
 * generic trait beside the vendor-specific one: svm, vmx), as used by
 * cpu_features_to_traits(). Features not in the table give no trait.
 */

export const CPU_TRAITS_MAPPING: Readonly<Record<string, readonly string[]>> = {
  '3dnow': ['HW_CPU_X86_3DNOW'],
  abm: ['HW_CPU_X86_ABM'],
  aes: ['HW_CPU_X86_AESNI'],
  avx: ['HW_CPU_X86_AVX'],
  avx2: ['HW_CPU_X86_AVX2'],
  avx512bw: ['HW_CPU_X86_AVX512BW'],
  avx512cd: ['HW_CPU_X86_AVX512CD'],
  avx512dq: ['HW_CPU_X86_AVX512DQ'],
  avx512er: ['HW_CPU_X86_AVX512ER'],
  avx512f: ['HW_CPU_X86_AVX512F'],
  avx512pf: ['HW_CPU_X86_AVX512PF'],
  avx512vl: ['HW_CPU_X86_AVX512VL'],
  avx512vnni: ['HW_CPU_X86_AVX512VNNI'],
  avx512vbmi: ['HW_CPU_X86_AVX512VBMI'],
  avx512ifma: ['HW_CPU_X86_AVX512IFMA'],
  avx512vbmi2: ['HW_CPU_X86_AVX512VBMI2'],
  avx512bitalg: ['HW_CPU_X86_AVX512BITALG'],
  vaes: ['HW_CPU_X86_AVX512VAES'],
  gfni: ['HW_CPU_X86_AVX512GFNI'],
  vpclmulqdq: ['HW_CPU_X86_AVX512VPCLMULQDQ'],
  'avx512-vpopcntdq': ['HW_CPU_X86_AVX512VPOPCNTDQ'],
  bmi1: ['HW_CPU_X86_BMI'],
  bmi2: ['HW_CPU_X86_BMI2'],
  pclmuldq: ['HW_CPU_X86_CLMUL'],
  f16c: ['HW_CPU_X86_F16C'],
  fma: ['HW_CPU_X86_FMA3'],
  fma4: ['HW_CPU_X86_FMA4'],
  mmx: ['HW_CPU_X86_MMX'],
  mpx: ['HW_CPU_X86_MPX'],
  'sha-ni': ['HW_CPU_X86_SHA'],
  sse: ['HW_CPU_X86_SSE'],
  sse2: ['HW_CPU_X86_SSE2'],
  sse3: ['HW_CPU_X86_SSE3'],
  'sse4.1': ['HW_CPU_X86_SSE41'],
  'sse4.2': ['HW_CPU_X86_SSE42'],
  sse4a: ['HW_CPU_X86_SSE4A'],
  ssse3: ['HW_CPU_X86_SSSE3'],
  svm: ['HW_CPU_X86_SVM', 'HW_CPU_X86_AMD_SVM'],
  tbm: ['HW_CPU_X86_TBM'],
  vmx: ['HW_CPU_X86_VMX', 'HW_CPU_X86_INTEL_VMX'],
  xop: ['HW_CPU_X86_XOP'],
};

/**
 * libvirt's names where they differ from the table's keys. libvirt's x86
 * cpu_map (9.0, Debian 12: /usr/share/libvirt/cpu_map/x86_features.xml)
 * calls SSE3 "pni" (with "sse3" only as QEMU's alias), and that is the name
 * host capabilities, domain capabilities and expanded baselines print, so
 * nova's 'sse3' key never matches libvirt's output; we map pni as well.
 * Every other key of the table is libvirt's own name.
 */
const LIBVIRT_ALIASES: ReadonlyMap<string, string> = new Map([['pni', 'sse3']]);

/** The table as a Map: feature names are data, and must never reach Object.prototype ('constructor', …). */
const BY_FEATURE: ReadonlyMap<string, readonly string[]> = new Map(Object.entries(CPU_TRAITS_MAPPING));

/** The traits one libvirt CPU feature gives: none for a feature nova does not map. */
export function traitsForFeature(feature: string): readonly string[] {
  const name = feature.toLowerCase();
  return BY_FEATURE.get(LIBVIRT_ALIASES.get(name) ?? name) ?? [];
}

/** The traits a set of libvirt CPU features gives, sorted, each once. */
export function cpuFeaturesToTraits(features: Iterable<string>): string[] {
  const traits = new Set<string>();
  for (const feature of features) for (const trait of traitsForFeature(feature)) traits.add(trait);
  return [...traits].sort();
}
