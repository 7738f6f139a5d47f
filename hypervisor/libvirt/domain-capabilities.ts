/**
 * virConnectGetDomainCapabilities' XML as typed data: for one emulator,
 * machine, architecture and virt type, the vCPU limit and the CPU modes with
 * the named models QEMU can (usable='yes') or cannot provide.
 */
import { attr, child, childText, children, intAttr, parseDocument, requiredText, text, type XmlNode } from './capabilities-xml.js';

export type ModelUsable = 'yes' | 'no' | 'unknown';

export interface CpuModelCapability {
  name: string;
  usable: ModelUsable;
  vendor: string | null;
  /** Features the hypervisor lacks for this model, where libvirt lists them (`<blockers>`, newer libvirt; 9.0 does not). */
  blockers?: string[];
  deprecated?: boolean;
  /** The versioned model an alias stands for, where libvirt reports it. */
  canonical?: string;
}

export interface HostModelFeature {
  name: string;
  /** 'require', 'disable', … */
  policy: string | null;
}

export interface DomainCpuModes {
  hostPassthrough: { supported: boolean };
  /** mode='maximum' (libvirt ≥ 7.9): everything the hypervisor can give, migratable or not. */
  maximum: { supported: boolean };
  hostModel: {
    supported: boolean;
    model: string | null;
    /** 'allow' or 'forbid': whether libvirt may fall back to another model. */
    fallback: string | null;
    vendor: string | null;
    features: HostModelFeature[];
  };
  custom: { supported: boolean; models: CpuModelCapability[] };
}

export interface DomainCapabilities {
  /** The emulator binary. */
  path: string;
  /** The virt type: 'qemu' or 'kvm'. */
  domain: string;
  machine: string | null;
  arch: string;
  vcpuMax: number | null;
  cpu: DomainCpuModes;
}

const DOCUMENT = 'domain capabilities';

function supported(node: XmlNode | undefined): boolean {
  return attr(node, 'supported') === 'yes';
}

function usable(value: string | null): ModelUsable {
  return value === 'yes' || value === 'no' ? value : 'unknown';
}

function customModels(mode: XmlNode | undefined): CpuModelCapability[] {
  const blockers = new Map<string, string[]>();
  for (const node of children(mode, 'blockers')) {
    const model = attr(node, 'model');
    if (model === null) continue;
    blockers.set(
      model,
      children(node, 'feature')
        .map((feature) => attr(feature, 'name'))
        .filter((name): name is string => name !== null),
    );
  }
  return children(mode, 'model').map((node) => {
    const name = text(node) ?? '';
    const model: CpuModelCapability = { name, usable: usable(attr(node, 'usable')), vendor: attr(node, 'vendor') };
    const blocking = blockers.get(name);
    if (blocking !== undefined) model.blockers = blocking;
    if (attr(node, 'deprecated') === 'yes') model.deprecated = true;
    const canonical = attr(node, 'canonical');
    if (canonical !== null) model.canonical = canonical;
    return model;
  });
}

function cpuModes(cpu: XmlNode | undefined): DomainCpuModes {
  const modes = new Map(children(cpu, 'mode').map((mode) => [attr(mode, 'name') ?? '', mode] as const));
  const hostModel = modes.get('host-model');
  const modelNode = child(hostModel, 'model');
  const custom = modes.get('custom');
  return {
    hostPassthrough: { supported: supported(modes.get('host-passthrough')) },
    maximum: { supported: supported(modes.get('maximum')) },
    hostModel: {
      supported: supported(hostModel),
      model: text(modelNode),
      fallback: attr(modelNode, 'fallback'),
      vendor: childText(hostModel, 'vendor'),
      features: children(hostModel, 'feature')
        .map((feature) => ({ name: attr(feature, 'name') ?? '', policy: attr(feature, 'policy') }))
        .filter((feature) => feature.name !== ''),
    },
    custom: { supported: supported(custom), models: customModels(custom) },
  };
}

/** Parses virConnectGetDomainCapabilities' XML; a CapabilitiesXmlError if it is malformed or lacks path, domain or arch. */
export function parseDomainCapabilities(xml: string): DomainCapabilities {
  const root = parseDocument(DOCUMENT, xml, 'domainCapabilities');
  return {
    path: requiredText(DOCUMENT, root, 'path', '<domainCapabilities>'),
    domain: requiredText(DOCUMENT, root, 'domain', '<domainCapabilities>'),
    machine: childText(root, 'machine'),
    arch: requiredText(DOCUMENT, root, 'arch', '<domainCapabilities>'),
    vcpuMax: intAttr(child(root, 'vcpu'), 'max'),
    cpu: cpuModes(child(root, 'cpu')),
  };
}
