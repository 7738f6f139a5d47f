/**
 * novalet's record of an instance kept in its libvirt domain's <metadata>,
 * in a namespace of its own (as nova keeps <nova:instance>), so that a
 * domain found without its record can still be recognised and explained.
 */

export const NOVALET_METADATA_URI = 'http://novalet.org/xmlns/libvirt/novalet/1.0';
export const NOVALET_METADATA_PREFIX = 'novalet';

export interface InstanceMetadata {
  name: string;
  createdAt: string;
  vcpus: number;
  memoryMiB: number;
  image: string | null;
  virtType: 'kvm' | 'qemu';
  /** Why this virt type: the decision's sentence. */
  virtTypeReason: string;
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
    },
  };
}
