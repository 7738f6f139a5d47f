/**
 * virConnectGetCapabilities' XML as typed data: the host CPU and, per guest
 * architecture, its emulator, machine types and domain types (qemu = TCG,
 * kvm = hardware-assisted). Domain capabilities live in domain-capabilities.ts.
 */
import {
  attr,
  CapabilitiesXmlError,
  child,
  childText,
  children,
  intAttr,
  parseDocument,
  requiredText,
  text,
  type XmlNode,
} from './capabilities-xml.js';

export { CapabilitiesXmlError } from './capabilities-xml.js';
export { parseDomainCapabilities, type DomainCapabilities } from './domain-capabilities.js';

export interface CpuTopology {
  sockets: number;
  /** Absent before libvirt 6.0 and on architectures without dies. */
  dies?: number;
  cores: number;
  threads: number;
}

export interface HostCpu {
  arch: string;
  /** libvirt's name for the closest CPU model, e.g. "kvm64", "Skylake-Client-IBRS". */
  model: string | null;
  vendor: string | null;
  topology: CpuTopology | null;
  /** Features beyond the model, as libvirt names them ("vmx", "avx2", …). */
  features: string[];
}

export interface GuestMachine {
  name: string;
  /** The versioned machine an alias stands for: "pc" → "pc-i440fx-7.2". */
  canonical?: string;
  maxCpus: number | null;
  deprecated?: boolean;
}

export interface GuestCapabilities {
  osType: string;
  arch: string;
  wordsize: number | null;
  emulator: string | null;
  machines: GuestMachine[];
  /** Domain types libvirt can run this guest with: 'qemu', 'kvm', … */
  domainTypes: string[];
}

export interface HostCapabilities {
  host: {
    uuid: string | null;
    arch: string;
    cpu: HostCpu;
    /** NUMA cells in <host><topology><cells>: the <cell>s listed (else its num); null when libvirt gives no topology. */
    numaCells: number | null;
  };
  guests: GuestCapabilities[];
}

const DOCUMENT = 'host capabilities';

function topology(node: XmlNode | undefined): CpuTopology | null {
  const sockets = intAttr(node, 'sockets');
  const cores = intAttr(node, 'cores');
  const threads = intAttr(node, 'threads');
  if (sockets === null || cores === null || threads === null) return null;
  const dies = intAttr(node, 'dies');
  return dies === null ? { sockets, cores, threads } : { sockets, dies, cores, threads };
}

function machine(node: XmlNode): GuestMachine {
  const result: GuestMachine = { name: text(node) ?? '', maxCpus: intAttr(node, 'maxCpus') };
  const canonical = attr(node, 'canonical');
  if (canonical !== null) result.canonical = canonical;
  if (attr(node, 'deprecated') === 'yes') result.deprecated = true;
  return result;
}

function guest(node: XmlNode, index: number): GuestCapabilities {
  const archNode = child(node, 'arch');
  const arch = attr(archNode, 'name');
  if (arch === null) throw new CapabilitiesXmlError(DOCUMENT, `<guest> number ${index + 1} has no <arch name=…>`);
  const wordsize = childText(archNode, 'wordsize');
  return {
    osType: requiredText(DOCUMENT, node, 'os_type', `<guest> for ${arch}`),
    arch,
    wordsize: wordsize === null ? null : Number(wordsize),
    emulator: childText(archNode, 'emulator'),
    machines: children(archNode, 'machine').map(machine),
    domainTypes: children(archNode, 'domain')
      .map((domain) => attr(domain, 'type'))
      .filter((type): type is string => type !== null),
  };
}

function numaCells(topologyNode: XmlNode | undefined): number | null {
  if (topologyNode === undefined) return null;
  const cells = child(topologyNode, 'cells');
  const listed = children(cells, 'cell').length;
  return listed > 0 ? listed : (intAttr(cells, 'num') ?? 0);
}

/** Parses virConnectGetCapabilities' XML; a CapabilitiesXmlError if it is malformed or lacks the host CPU's arch. */
export function parseCapabilities(xml: string): HostCapabilities {
  const root = parseDocument(DOCUMENT, xml, 'capabilities');
  const host = child(root, 'host');
  const cpu = child(host, 'cpu');
  const arch = requiredText(DOCUMENT, cpu, 'arch', '<host><cpu>');
  return {
    host: {
      uuid: childText(host, 'uuid'),
      arch,
      cpu: {
        arch,
        model: childText(cpu, 'model'),
        vendor: childText(cpu, 'vendor'),
        topology: topology(child(cpu, 'topology')),
        features: children(cpu, 'feature')
          .map((feature) => attr(feature, 'name'))
          .filter((name): name is string => name !== null),
      },
      numaCells: numaCells(child(host, 'topology')),
    },
    guests: children(root, 'guest').map(guest),
  };
}
