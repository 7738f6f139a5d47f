import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseConfigText } from '../../config/load-config.js';
import { EMBEDDED_QEMU_CONF } from '../../hypervisor/libvirt/embedded-root.js';
import { openConfiguredConnection } from '../../hypervisor/libvirt/open-configured-connection.js';

describe('[libvirt] connection_uri', () => {
  it('empty (the default): the embedded driver under <state_path>/libvirt, with the qemu.conf novalet writes', async () => {
    const state = mkdtempSync(path.join(tmpdir(), 'novalet-conn-'));
    const config = parseConfigText(`[DEFAULT]\nstate_path = ${state}\n`, 'conn.conf').values;
    const connection = await openConfiguredConnection(config);
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

  it('another URI is opened as it is, and a failure says which and why', async () => {
    const config = parseConfigText('[libvirt]\nconnection_uri = qemu+unix:///system?socket=/nonexistent/libvirt-sock\n', 'conn.conf').values;
    const err = await openConfiguredConnection(config).then(
      () => null,
      (e: unknown) => e as { code: string; message: string },
    );
    expect(err).not.toBeNull();
    expect(err?.message).toContain('/nonexistent/libvirt-sock');
  });
});
