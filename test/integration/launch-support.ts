import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadConfig } from '../../config/load-config.js';
import type { NovaletConfig } from '../../config/novalet-config.js';
import { assembleComputeHost, type ComputeHost, type SelfTestPolicy } from '../../hypervisor/compute-host.js';
import { buildTestGuest, TEST_GUEST_DIR } from '../guest/test-guest.js';
import { openTestRoot } from '../libvirt/libvirt-test-support.js';

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
      `instances_path = ${path.join(stateDir, 'instances')}`,
      '[libvirt]',
      `kvm_selftest_guest_dir = ${TEST_GUEST_DIR}`,
      // Under working KVM the guest needs ~1 s, under TCG here ~4 s; PVM never gets there.
      'kvm_selftest_timeout = 8',
      extra,
    ].join('\n'),
  );
  return { config: loadConfig({ configFiles: [file] }).values, file, stateDir };
}

/**
 * A compute host assembled as the service assembles one (compute-host.ts),
 * on a root of the test pool (warm capability caches, one per test file).
 */
export async function testComputeHost(config: NovaletConfig, selfTest: SelfTestPolicy = 'run'): Promise<ComputeHost> {
  const { connection } = await openTestRoot();
  try {
    const host = await assembleComputeHost({ config, purpose: 'service', selfTest, connection });
    return { ...host, close: () => connection.close() };
  } catch (err) {
    await connection.close();
    throw err;
  }
}
