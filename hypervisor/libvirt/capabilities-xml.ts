/**
 * Reading libvirt's capability documents with fast-xml-parser: well-formedness
 * checked first, then plain objects read through small accessors that treat a
 * missing element as absent and one element as a list of one.
 */
import { XMLParser, XMLValidator } from './fast-xml-parser.js';
import { NovaletError } from '../../config/novalet-error.js';

/** A capability document that is not what libvirt writes: malformed, or without an element novalet needs. */
export class CapabilitiesXmlError extends NovaletError {
  /** Which document: "host capabilities", "domain capabilities". */
  readonly document: string;

  constructor(document: string, problem: string) {
    super(
      'CAPABILITIES_XML_INVALID',
      `The ${document} XML from libvirt cannot be read: ${problem}.`,
      'Check that libvirt answers with its own XML (compare with virsh); if it does, report this with the document attached.',
    );
    this.document = document;
  }
}

/** An element as fast-xml-parser gives it: attributes as '@_name', text as '#text', children by name. */
export type XmlNode = Record<string, unknown>;

const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: '@_',
  textNodeName: '#text',
  parseTagValue: false,
  parseAttributeValue: false,
  trimValues: true,
});

/** The root element `rootName` of `xml`, or a CapabilitiesXmlError naming `document`. */
export function parseDocument(document: string, xml: string, rootName: string): XmlNode {
  const valid = XMLValidator.validate(xml);
  if (valid !== true) {
    throw new CapabilitiesXmlError(document, `${valid.err.msg} (line ${valid.err.line}, column ${valid.err.col})`);
  }
  const parsed = parser.parse(xml) as XmlNode;
  const root = parsed[rootName];
  if (root === undefined || typeof root !== 'object' || root === null) {
    throw new CapabilitiesXmlError(document, `its root element is not <${rootName}>`);
  }
  return root as XmlNode;
}

/** The child elements named `name` (none, one or many) as a list. */
export function children(node: XmlNode | undefined, name: string): XmlNode[] {
  const value = node?.[name];
  if (value === undefined || value === null) return [];
  const list = Array.isArray(value) ? value : [value];
  return list.map((item) => (typeof item === 'object' && item !== null ? (item as XmlNode) : { '#text': String(item) }));
}

export function child(node: XmlNode | undefined, name: string): XmlNode | undefined {
  return children(node, name)[0];
}

export function text(node: XmlNode | undefined): string | null {
  if (node === undefined) return null;
  const value = node['#text'];
  return value === undefined ? null : String(value);
}

export function childText(node: XmlNode | undefined, name: string): string | null {
  return text(child(node, name));
}

export function attr(node: XmlNode | undefined, name: string): string | null {
  const value = node?.[`@_${name}`];
  return value === undefined ? null : String(value);
}

export function intAttr(node: XmlNode | undefined, name: string): number | null {
  const value = attr(node, name);
  if (value === null || !/^-?\d+$/.test(value)) return null;
  return Number(value);
}

/** Text that must be there: its absence makes the document unreadable for novalet. */
export function requiredText(document: string, node: XmlNode | undefined, name: string, where: string): string {
  const value = childText(node, name);
  if (value === null || value === '') throw new CapabilitiesXmlError(document, `${where} has no <${name}>`);
  return value;
}
