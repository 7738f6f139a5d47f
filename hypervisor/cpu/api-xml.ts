import type { DomainCapabilities } from '../libvirt/domain-capabilities.js';

/**
 * `<cpu>` documents for libvirt's CPU APIs (compare, baseline): a custom CPU
 * of exactly one model, a host CPU, and the host-model CPU of domain
 * capabilities written as a custom one. Names are escaped: models and features come from
 * configuration and from libvirt.
 */

export interface CpuFeaturePolicy {
  name: string;
  /** 'require' when null. */
  policy: string | null;
}

export const escapeXml = (value: string) => value.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/'/g, '&apos;').replace(/"/g, '&quot;');

/** A guest `<cpu>`: exactly this model (no fallback to another), with these features. */
export function customCpuXml(model: string, vendor: string | null, features: readonly CpuFeaturePolicy[]): string {
  return [
    "<cpu mode='custom' match='exact'>",
    `<model fallback='forbid'>${escapeXml(model)}</model>`,
    vendor ? `<vendor>${escapeXml(vendor)}</vendor>` : '',
    ...features.map((f) => `<feature policy='${escapeXml(f.policy ?? 'require')}' name='${escapeXml(f.name)}'/>`),
    '</cpu>',
  ].join('');
}

/** A host `<cpu>` as libvirt's capabilities describe one: arch, model, vendor and the features it has. */
export function hostCpuXml(cpu: { arch: string; model: string; vendor: string | null; features: readonly string[] }): string {
  return [
    '<cpu>',
    `<arch>${escapeXml(cpu.arch)}</arch>`,
    `<model>${escapeXml(cpu.model)}</model>`,
    cpu.vendor ? `<vendor>${escapeXml(cpu.vendor)}</vendor>` : '',
    ...cpu.features.map((name) => `<feature name='${escapeXml(name)}'/>`),
    '</cpu>',
  ].join('');
}

/**
 * What a host-model guest gets, as a custom CPU: the domain capabilities'
 * host-model with its required and its disabled features — the disabled
 * ones must stay, or the named model brings them back (vme under TCG here).
 * `extra` features (cpu_model_extra_flags) take the place of the
 * host-model's own for the same names. null when libvirt names no model.
 */
export function hostModelCpuXml(caps: DomainCapabilities, extra: readonly CpuFeaturePolicy[] = []): string | null {
  const hostModel = caps.cpu.hostModel;
  if (!hostModel.model) return null;
  const overridden = new Set(extra.map((f) => f.name));
  const own = hostModel.features.filter((f) => !overridden.has(f.name) && (f.policy === 'require' || f.policy === 'disable'));
  return customCpuXml(hostModel.model, hostModel.vendor, [...own, ...extra]);
}
