/**
 * novalet's record of an instance kept in its libvirt domain's <metadata>,
 * in a namespace of its own (as nova keeps <nova:instance>), so that a
 * domain found without its record can still be recognised and explained.
 */

import { XMLParser } from '../libvirt/fast-xml-parser.js';

export const NOVALET_METADATA_URI = 'http://novalet.org/xmlns/libvirt/novalet/1.0';
export const NOVALET_METADATA_PREFIX = 'novalet';

/**
 * Who made a domain: the compute service, a command (`novalet run`) or the
 * KVM self-test, and which process in which boot. A start-up sweep removes
 * what a command or a self-test left when it was killed, by this record
 * alone, and never a domain of the service (leftovers.ts).
 */
export interface DomainOwner {
  kind: 'service' | 'command' | 'self-test';
  pid: number;
  bootId: string;
}

export interface InstanceMetadata {
  name: string;
  createdAt: string;
  vcpus: number;
  memoryMiB: number;
  image: string | null;
  virtType: 'kvm' | 'qemu';
  /** Why this virt type: the decision's sentence. */
  virtTypeReason: string;
  owner?: DomainOwner;
}

/** The element as fast-xml-parser's builder wants it (attributes prefixed '@_'). */
export function metadataElement(meta: InstanceMetadata): Record<string, unknown> {
  const p = NOVALET_METADATA_PREFIX;
  return {
    [`${p}:instance`]: {
      [`@_xmlns:${p}`]: NOVALET_METADATA_URI,
      [`${p}:name`]: meta.name,
      [`${p}:creationTime`]: meta.createdAt,
      [`${p}:flavor`]: { '@_vcpus': meta.vcpus, '@_memory': meta.memoryMiB },
      [`${p}:image`]: meta.image ?? '',
      [`${p}:virtType`]: { '@_reason': meta.virtTypeReason, '#text': meta.virtType },
      ...(meta.owner ? { [`${p}:owner`]: { '@_kind': meta.owner.kind, '@_pid': meta.owner.pid, '@_boot': meta.owner.bootId } } : {}),
    },
  };
}

const OWNER_KINDS: ReadonlySet<string> = new Set(['service', 'command', 'self-test']);
const ownerParser = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '@_', removeNSPrefix: true, processEntities: false });

/** The owner recorded in a domain's novalet metadata (as libvirt returns the element), or null. */
export function parseOwner(metadataXml: string | null): DomainOwner | null {
  if (metadataXml === null) return null;
  let parsed: unknown;
  try {
    parsed = ownerParser.parse(metadataXml);
  } catch {
    return null;
  }
  const owner = (parsed as { instance?: { owner?: Record<string, unknown> } }).instance?.owner;
  if (typeof owner !== 'object' || owner === null) return null;
  const kind = String(owner['@_kind'] ?? '');
  const pid = Number(owner['@_pid']);
  const bootId = String(owner['@_boot'] ?? '');
  if (!OWNER_KINDS.has(kind) || !Number.isInteger(pid) || pid <= 0 || bootId === '') return null;
  return { kind: kind as DomainOwner['kind'], pid, bootId };
}
