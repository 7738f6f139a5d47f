import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseConfigText } from '../../config/load-config.js';
import { EMBEDDED_QEMU_CONF } from '../../hypervisor/libvirt/embedded-root.js';
import { openHostConnection } from '../../hypervisor/compute-host.js';

describe('[libvirt] connection_uri', () => {
  it('empty (the default): for the service, the embedded driver under <state_path>/libvirt, with the qemu.conf novalet writes', async () => {
    const state = mkdtempSync(path.join(tmpdir(), 'novalet-conn-'));
    const config = parseConfigText(`[DEFAULT]\nstate_path = ${state}\n`, 'conn.conf').values;
    const connection = await openHostConnection(config, 'service');
    try {
      expect(connection.uri).toBe(`qemu:///embed?root=${state}/libvirt`);
      expect(connection.embedded).toBe(true);
      expect(readFileSync(path.join(state, 'libvirt/etc/qemu.conf'), 'utf8')).toBe(EMBEDDED_QEMU_CONF);
      expect(await connection.getLibVersion()).toMatch(/^\d+\.\d+\.\d+$/);
      expect(await connection.listAllDomains()).toEqual([]);
    } finally {
      await connection.close();
    }
  });

  it('another URI is opened as it is, for the service and the commands alike, and a failure says which and why', async () => {
    const config = parseConfigText('[libvirt]\nconnection_uri = qemu+unix:///system?socket=/nonexistent/libvirt-sock\n', 'conn.conf').values;
    for (const purpose of ['service', 'command'] as const) {
      const err = await openHostConnection(config, purpose).then(
        () => null,
        (e: unknown) => e as { code: string; message: string },
      );
      expect(err).not.toBeNull();
      expect(err?.message).toContain('/nonexistent/libvirt-sock');
    }
  });
});
