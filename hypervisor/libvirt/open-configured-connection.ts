import { effectiveConnectionUri } from '../../config/effective-values.js';
import type { NovaletConfig } from '../../config/novalet-config.js';
import { embeddedRootOf, prepareEmbeddedRoot } from './embedded-root.js';
import { LibvirtConnection } from './connection.js';

/**
 * The process's connection as `[libvirt] connection_uri` says: empty (the
 * default) embeds libvirt's QEMU driver under `<state_path>/libvirt`, whose
 * etc/qemu.conf novalet writes first; any other URI (qemu:///system where a
 * libvirtd runs) is opened as it is.
 */
export async function openConfiguredConnection(config: NovaletConfig): Promise<LibvirtConnection> {
  const uri = effectiveConnectionUri(config);
  const root = embeddedRootOf(uri);
  return LibvirtConnection.open(root === null ? uri : await prepareEmbeddedRoot(root));
}
