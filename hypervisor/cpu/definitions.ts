import { readFileSync } from 'node:fs';
import { XMLBuilder, XMLParser, XMLValidator } from '../libvirt/fast-xml-parser.js';
import { NovaletError } from '../../config/novalet-error.js';
import { isX86 } from '../host/cpuinfo.js';

/**
 * `<cpu>` definitions read from what operators have at hand, as virsh's
 * hypervisor-cpu-compare and -baseline read them: a bare `<cpu>`, a host's
 * capabilities (host/cpu), a domain (its <cpu>, with the architecture from
 * os/type), or domain capabilities (the host-model CPU, as a custom one).
 * Several documents may be pasted one after another in one file. Each comes
 * back as a normalised `<cpu>` XML that libvirt's CPU APIs take.
 */

export class CpuDefinitionError extends NovaletError {}

export interface CpuFeature {
  name: string;
  policy: string | null;
}

export interface CpuDefinition {
  /** The file (or other source) and which definition in it, for messages. */
  source: string;
  arch: string;
  model: string;
  vendor: string | null;
  features: CpuFeature[];
  /** The definition as `<cpu>` XML for libvirt. */
  xml: string;
}

const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: '@_',
  parseTagValue: false,
  parseAttributeValue: false,
  trimValues: true,
  isArray: (name) => ['cpu', 'feature', 'mode', 'capabilities', 'domain', 'domainCapabilities'].includes(name),
});
const builder = new XMLBuilder({ ignoreAttributes: false, attributeNamePrefix: '@_', format: true, suppressEmptyNode: true });

type Node = Record<string, unknown>;

const asNodes = (value: unknown): Node[] => (Array.isArray(value) ? value : value === undefined ? [] : [value]) as Node[];
const text = (value: unknown): string | null => {
  if (typeof value === 'string') return value.trim() || null;
  if (value && typeof value === 'object' && '#text' in value) return String((value as Node)['#text']).trim() || null;
  return null;
};

let x86Features: Set<string> | null = null;

/** libvirt's own list of x86 CPU feature names (its cpu_map), read once. */
export function knownX86Features(file = '/usr/share/libvirt/cpu_map/x86_features.xml'): Set<string> {
  x86Features ??= new Set([...readFileSync(file, 'utf8').matchAll(/<feature name='([^']+)'/g)].map((m) => m[1] as string));
  return x86Features;
}

function definition(source: string, cpu: Node, arch: string | null, asCustom: boolean): CpuDefinition {
  const model = text(cpu.model);
  const cpuArch = text(cpu.arch) ?? arch;
  if (!model) throw new CpuDefinitionError('CPU_XML_NO_MODEL', `${source}: the <cpu> has no <model>.`, 'Give a CPU model, e.g. <model>Westmere</model>.');
  if (!cpuArch) throw new CpuDefinitionError('CPU_XML_NO_ARCH', `${source}: the <cpu> (model ${model}) has no architecture.`, 'Add <arch>x86_64</arch> to it.');
  const features = asNodes(cpu.feature).map((f) => ({ name: String(f['@_name'] ?? '').trim(), policy: f['@_policy'] === undefined ? null : String(f['@_policy']) }));
  const known = isX86(cpuArch) ? knownX86Features() : null;
  for (const feature of features) {
    if (!feature.name) throw new CpuDefinitionError('CPU_XML_BAD_FEATURE', `${source}: a <feature> has no name.`, 'Give each feature a name attribute.');
    if (known && !known.has(feature.name)) {
      throw new CpuDefinitionError('CPU_XML_UNKNOWN_FEATURE', `${source}: '${feature.name}' is not a CPU feature libvirt knows for ${cpuArch}.`, 'Check the spelling against libvirt\'s cpu_map (e.g. sse4.2, not sse4_2).');
    }
  }
  const vendor = text(cpu.vendor);
  const element: Node = {};
  if (asCustom) {
    element['@_mode'] = 'custom';
    element['@_match'] = 'exact';
  } else {
    for (const attr of ['@_mode', '@_match', '@_check']) if (cpu[attr] !== undefined) element[attr] = cpu[attr];
  }
  // libvirt takes <arch> only in a host CPU; a guest CPU (mode/match) gets it from the domain.
  if (element['@_mode'] === undefined && element['@_match'] === undefined) element.arch = cpuArch;
  element.model = model;
  if (vendor) element.vendor = vendor;
  element.feature = features.map((f) => (f.policy ? { '@_policy': f.policy, '@_name': f.name } : { '@_name': f.name }));
  return { source, arch: cpuArch, model, vendor, features, xml: builder.build({ cpu: element }) as string };
}

/**
 * A host CPU as nova keeps it (compute_nodes.cpu_info, `openstack hypervisor
 * show -c cpu_info`: arch, model, vendor, features) and as `novalet
 * capabilities --json` reports it under `cpu_info` — the capability reports
 * the agent will publish. cpu_info may itself be a JSON string, as nova
 * stores it.
 */
function cpuInfoDefinition(source: string, value: unknown): CpuDefinition {
  let info = value;
  if (info && typeof info === 'object' && 'cpu_info' in info) info = (info as Node).cpu_info;
  if (typeof info === 'string') {
    try {
      info = JSON.parse(info) as unknown;
    } catch {
      throw new CpuDefinitionError('CPU_JSON_INVALID', `${source}: cpu_info is a string but not JSON.`, "Give nova's cpu_info object (arch, model, vendor, features).");
    }
  }
  if (!info || typeof info !== 'object' || Array.isArray(info)) {
    throw new CpuDefinitionError('CPU_JSON_NO_CPU', `${source} is JSON but not a CPU: expected nova's cpu_info (arch, model, vendor, features) or a capability report holding one.`, 'Give the output of `novalet capabilities --json` or of `openstack hypervisor show -c cpu_info`.');
  }
  const cpuInfo = info as Node;
  const features = cpuInfo.features ?? [];
  if (!Array.isArray(features) || !features.every((f) => typeof f === 'string')) {
    throw new CpuDefinitionError('CPU_JSON_BAD_FEATURES', `${source}: cpu_info.features must be a list of feature names.`, 'Give the features as libvirt names them, e.g. ["vmx", "sse4.2"].');
  }
  const asText = (v: unknown) => (typeof v === 'string' && v.trim() !== '' ? v : undefined);
  for (const key of ['arch', 'model'] as const) {
    if (!asText(cpuInfo[key])) throw new CpuDefinitionError(key === 'arch' ? 'CPU_XML_NO_ARCH' : 'CPU_XML_NO_MODEL', `${source}: cpu_info has no ${key}.`, `Give it, e.g. "${key}": "${key === 'arch' ? 'x86_64' : 'Westmere'}".`);
  }
  return definition(source, { arch: asText(cpuInfo.arch), model: asText(cpuInfo.model), vendor: asText(cpuInfo.vendor), feature: features.map((name) => ({ '@_name': name })) }, null, false);
}

function readCpuInfoJson(content: string, source: string): CpuDefinition[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(content) as unknown;
  } catch (err) {
    throw new CpuDefinitionError('CPU_JSON_INVALID', `${source} is not valid JSON: ${(err as Error).message}.`, "Give nova's cpu_info, a `novalet capabilities --json` report, or a list of them.");
  }
  const items = Array.isArray(parsed) ? parsed : [parsed];
  if (items.length === 0) throw new CpuDefinitionError('CPU_XML_NO_CPU', `${source} holds no CPU definition.`, 'Give at least one cpu_info.');
  return items.map((item, i) => cpuInfoDefinition(`${source} (CPU ${i + 1})`, item));
}

/**
 * Every CPU definition in `content`; `source` names it in errors (usually the
 * file). XML (a `<cpu>`, capabilities, domains, domain capabilities) or JSON
 * (nova's cpu_info, capability reports, or a list of them).
 */
export function readCpuDefinitions(content: string, source: string): CpuDefinition[] {
  const start = content.trimStart()[0];
  if (start === '{' || start === '[') return readCpuInfoJson(content, source);
  // Several documents pasted together are not one XML document: wrap them, as virsh does.
  const body = content.replace(/<\?xml[^>]*\?>/g, '');
  const wrapped = `<novalet-cpus>${body}</novalet-cpus>`;
  const valid = XMLValidator.validate(wrapped);
  if (valid !== true) {
    throw new CpuDefinitionError('CPU_XML_INVALID', `${source} is not valid XML: ${valid.err.msg} (line ${valid.err.line}).`, 'Give a <cpu>, capabilities, domain or domain capabilities XML document.');
  }
  const root = (parser.parse(wrapped) as Node)['novalet-cpus'] as Node | string | undefined;
  const top: Node = typeof root === 'object' && root !== null ? root : {};
  const found: CpuDefinition[] = [];
  const label = (n: number) => `${source} (CPU ${n})`;
  for (const cpu of asNodes(top.cpu)) found.push(definition(label(found.length + 1), cpu, null, false));
  for (const caps of asNodes(top.capabilities)) {
    for (const cpu of asNodes((caps.host as Node | undefined)?.cpu)) found.push(definition(label(found.length + 1), cpu, null, false));
  }
  for (const domain of asNodes(top.domain)) {
    const type = ((domain.os as Node | undefined)?.type ?? null) as Node | null;
    const arch = type && typeof type === 'object' ? (type['@_arch'] as string | undefined) ?? null : null;
    for (const cpu of asNodes(domain.cpu)) found.push(definition(label(found.length + 1), cpu, arch, false));
  }
  for (const caps of asNodes(top.domainCapabilities)) {
    const arch = text(caps.arch);
    for (const cpu of asNodes(caps.cpu)) {
      const hostModel = asNodes(cpu.mode).find((m) => m['@_name'] === 'host-model' && m['@_supported'] === 'yes');
      if (hostModel) found.push(definition(label(found.length + 1), hostModel, arch, true));
    }
  }
  if (found.length === 0) {
    throw new CpuDefinitionError('CPU_XML_NO_CPU', `${source} holds no CPU definition.`, 'Give a <cpu>, or capabilities, domain or domain capabilities XML that has one.');
  }
  return found;
}
