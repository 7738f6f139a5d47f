import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadConfig } from '../../config/load-config.js';
import type { NovaletConfig } from '../../config/novalet-config.js';
import { buildTestGuest, TEST_GUEST_DIR } from '../guest/test-guest.js';

/** A configuration for one test file: its own state_path, the shared test guest. */
export function testConfig(extra = ''): { config: NovaletConfig; file: string; stateDir: string } {
  buildTestGuest();
  const stateDir = mkdtempSync(path.join(tmpdir(), 'novalet-state-'));
  const file = path.join(stateDir, 'novalet.conf');
  writeFileSync(
    file,
    [
      '[DEFAULT]',
      `state_path = ${stateDir}`,
      '[libvirt]',
      `kvm_selftest_guest_dir = ${TEST_GUEST_DIR}`,
      // Under working KVM the guest needs ~1 s, under TCG here ~4 s; PVM never gets there.
      'kvm_selftest_timeout = 8',
      extra,
    ].join('\n'),
  );
  return { config: loadConfig({ configFiles: [file] }).values, file, stateDir };
}
