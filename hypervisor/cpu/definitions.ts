import { XMLBuilder, XMLParser, XMLValidator } from '../libvirt/fast-xml-parser.js';
import { NovaletError } from '../../config/novalet-error.js';
import { isX86 } from '../host/cpuinfo.js';
import { closeNames, featureSpelling, knownX86Features, knownX86Models } from './names.js';

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

export { knownX86Features } from './names.js';

function definition(source: string, cpu: Node, arch: string | null, asCustom: boolean): CpuDefinition {
  const model = text(cpu.model);
  const cpuArch = text(cpu.arch) ?? arch;
  if (!model) throw new CpuDefinitionError('CPU_XML_NO_MODEL', `${source}: the <cpu> has no <model>.`, 'Give a CPU model, e.g. <model>Westmere</model>.');
  if (!cpuArch) throw new CpuDefinitionError('CPU_XML_NO_ARCH', `${source}: the <cpu> (model ${model}) has no architecture.`, 'Add <arch>x86_64</arch> to it.');
  const features = asNodes(cpu.feature).map((f) => ({ name: String(f['@_name'] ?? '').trim(), policy: f['@_policy'] === undefined ? null : String(f['@_policy']) }));
  const x86 = isX86(cpuArch);
  if (x86) {
    const models = knownX86Models();
    if (!models.includes(model)) {
      const close = closeNames(model, models);
      throw new CpuDefinitionError(
        'CPU_XML_UNKNOWN_MODEL',
        `${source}: '${model}' is not a CPU model libvirt knows for ${cpuArch} (its cpu_map).`,
        close.length > 0 ? `Did you mean ${close.join(' or ')}?` : 'Use a model `virsh cpu-models x86_64` lists, such as Nehalem.',
      );
    }
  }
  const known = x86 ? knownX86Features() : null;
  for (const feature of features) {
    if (!feature.name) throw new CpuDefinitionError('CPU_XML_BAD_FEATURE', `${source}: a <feature> has no name.`, 'Give each feature a name attribute.');
    if (known && !known.has(feature.name)) {
      const spelled = featureSpelling(feature.name, known);
      throw new CpuDefinitionError(
        'CPU_XML_UNKNOWN_FEATURE',
        `${source}: '${feature.name}' is not a CPU feature libvirt knows for ${cpuArch} (its cpu_map).`,
        spelled ? `Did you mean '${spelled}'?` : "Check the spelling against libvirt's cpu_map (e.g. sse4.2, not sse4_2).",
      );
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
  if (items.length > MAX_CPU_DEFINITIONS) throw tooMany(`${source} holds ${items.length} CPU definitions`);
  if (items.length === 0) throw new CpuDefinitionError('CPU_XML_NO_CPU', `${source} holds no CPU definition.`, 'Give at least one cpu_info.');
  return items.map((item, i) => cpuInfoDefinition(`${source} (CPU ${i + 1})`, item));
}

/** What one command reads at most: a pool's hosts, not a dump (libvirt baselines them all in one call). */
export const MAX_CPU_DEFINITIONS = 1000;

const WRAPPER = 'novalet-cpus';

/** Line (1-based) of an offset in `content`. */
const lineAt = (content: string, offset: number) => content.slice(0, offset).split('\n').length;

/**
 * A DTD can declare entities that read files (`SYSTEM "file:///…"`) or grow
 * without bound; libvirt's CPU documents never have one, so none is read.
 * Only XML's five predefined entities and character references are taken.
 */
function refuseDoctypeAndEntities(content: string, source: string): void {
  const declaration = /<!(DOCTYPE|ENTITY)/i.exec(content);
  if (declaration) {
    throw new CpuDefinitionError(
      'CPU_XML_DOCTYPE',
      `${source}, line ${lineAt(content, declaration.index)}: has a <!${declaration[1]!.toUpperCase()} …> declaration; novalet reads CPU documents without DTDs or entity declarations, as libvirt writes them.`,
      'Remove the <!DOCTYPE …> declaration (and the entities it declares) from the file.',
    );
  }
  const reference = /&(?!(?:lt|gt|amp|apos|quot|#[0-9]+|#x[0-9a-fA-F]+);)[^;\s<&]{0,40};?/.exec(content);
  if (reference) {
    throw new CpuDefinitionError(
      'CPU_XML_INVALID',
      `${source}, line ${lineAt(content, reference.index)}: '${reference[0]}' is not an entity XML defines (only &lt; &gt; &amp; &apos; &quot; and character references such as &#46; are).`,
      "Write the character itself, or escape '&' as &amp;.",
    );
  }
}

/**
 * The validator's complaint about the wrapped text, said of the operator's
 * document: the wrapper is on a line of its own before it (so lines are one
 * off) and after it (so a tag still open at the wrapper's end is never closed).
 */
function xmlProblem(err: { msg: string; line: number; col: number }, bodyLines: number): string {
  const line = err.line - 1;
  const opened = /^Expected closing tag '([^']+)' \(opened in line (\d+), col (\d+)\) instead of closing tag '([^']+)'\.$/.exec(err.msg);
  if (opened) {
    const [, tag, openLine, openCol, closing] = opened;
    const where = `line ${Number(openLine) - 1}, col ${openCol}`;
    if (closing === WRAPPER) return `the <${tag}> opened in ${where} is never closed`;
    if (tag === WRAPPER) return `line ${line}, col ${err.col}: </${closing}> closes no open tag`;
    return `line ${line}, col ${err.col}: </${closing}> where </${tag}> (opened in ${where}) is expected`;
  }
  if (err.msg.includes(WRAPPER) || line < 1 || line > bodyLines) return 'the document ends inside a tag, comment or CDATA section';
  return `line ${line}, col ${err.col}: ${err.msg.replace(/\.$/, '')}`;
}

/**
 * Every CPU definition in `content`; `source` names it in errors (usually the
 * file). XML (a `<cpu>`, capabilities, domains, domain capabilities) or JSON
 * (nova's cpu_info, capability reports, or a list of them).
 */
export function readCpuDefinitions(content: string, source: string): CpuDefinition[] {
  const start = content.trimStart()[0];
  const found = start === '{' || start === '[' ? readCpuInfoJson(content, source) : readCpuXml(content, source);
  if (found.length > MAX_CPU_DEFINITIONS) throw tooMany(`${source} holds ${found.length} CPU definitions`);
  return found;
}

/** `what`: "F holds 1200 CPU definitions" and the like. */
export function tooMany(what: string): CpuDefinitionError {
  return new CpuDefinitionError(
    'CPU_TOO_MANY',
    `${what}; novalet compares or baselines at most ${MAX_CPU_DEFINITIONS} at once.`,
    'Baseline the pool in parts, then baseline the results together.',
  );
}

function readCpuXml(content: string, source: string): CpuDefinition[] {
  refuseDoctypeAndEntities(content, source);
  // Several documents pasted together are not one XML document: wrap them, as
  // virsh does. Each declaration becomes blanks, so that lines and columns stay.
  const body = content.replace(/<\?xml[^>]*\?>/g, (decl) => decl.replace(/[^\n]/g, ' '));
  const wrapped = `<${WRAPPER}>\n${body}\n</${WRAPPER}>`;
  const valid = XMLValidator.validate(wrapped);
  if (valid !== true) {
    throw new CpuDefinitionError('CPU_XML_INVALID', `${source} is not well-formed XML: ${xmlProblem(valid.err, body.split('\n').length)}.`, 'Give a <cpu>, capabilities, domain or domain capabilities XML document.');
  }
  let parsed: Node;
  try {
    parsed = parser.parse(wrapped) as Node;
  } catch (err) {
    // The parser's own limits (nesting depth): still the document's fault.
    throw new CpuDefinitionError('CPU_XML_INVALID', `${source} cannot be read as XML: ${(err as Error).message.replace(/\.$/, '')}.`, 'Give a <cpu>, capabilities, domain or domain capabilities XML document.');
  }
  const root = parsed[WRAPPER] as Node | string | undefined;
  const top: Node = typeof root === 'object' && root !== null ? root : {};
  const found: CpuDefinition[] = [];
  const label = (n: number) => `${source} (CPU ${n})`;
  const add = (cpu: Node, arch: string | null, asCustom: boolean) => {
    if (found.length === MAX_CPU_DEFINITIONS) throw tooMany(`${source} holds more than ${MAX_CPU_DEFINITIONS} CPU definitions`);
    found.push(definition(label(found.length + 1), cpu, arch, asCustom));
  };
  for (const cpu of asNodes(top.cpu)) add(cpu, null, false);
  for (const caps of asNodes(top.capabilities)) {
    for (const cpu of asNodes((caps.host as Node | undefined)?.cpu)) add(cpu, null, false);
  }
  for (const domain of asNodes(top.domain)) {
    const type = ((domain.os as Node | undefined)?.type ?? null) as Node | null;
    const arch = type && typeof type === 'object' ? (type['@_arch'] as string | undefined) ?? null : null;
    for (const cpu of asNodes(domain.cpu)) add(cpu, arch, false);
  }
  for (const caps of asNodes(top.domainCapabilities)) {
    const arch = text(caps.arch);
    for (const cpu of asNodes(caps.cpu)) {
      const hostModel = asNodes(cpu.mode).find((m) => m['@_name'] === 'host-model' && m['@_supported'] === 'yes');
      if (hostModel) add(hostModel, arch, true);
    }
  }
  if (found.length === 0) {
    throw new CpuDefinitionError('CPU_XML_NO_CPU', `${source} holds no CPU definition.`, 'Give a <cpu>, or capabilities, domain or domain capabilities XML that has one.');
  }
  return found;
}
