import path from 'node:path';
import type { NovaletConfig } from '../config/novalet-config.js';
import type { HostProbe, KvmVerdict } from './host/facts.js';
import { probeHost } from './host/probe.js';
import { probeHostTools, type HostTools } from './host/tools.js';
import { qemuVersion, readBootId, readCachedSelfTest, SELF_TEST_CACHE, verdictWithSelfTest, type SelfTestResult } from './virt-type/self-test.js';
import { pathExists } from './host/path-exists.js';
import { judgeKvm } from './virt-type/kvm-reasons.js';

/**
 * What is known of KVM here without booting anything: the host probe, and
 * the self-test of this boot if novalet has run it (commands such as
 * validate and cpu-compare never boot a guest themselves).
 */
export interface KnownHost {
  probe: HostProbe;
  tools: HostTools;
  verdict: KvmVerdict;
  selfTest: SelfTestResult | null;
}

export async function knownHost(config: NovaletConfig): Promise<KnownHost> {
  const [probe, tools] = await Promise.all([probeHost(), probeHostTools()]);
  const emulator = tools.qemuEmulators[probe.arch];
  const cacheFile = path.join(config.DEFAULT.state_path, SELF_TEST_CACHE);
  let selfTest: SelfTestResult | null = null;
  if (emulator && (await pathExists(cacheFile))) {
    const [bootId, version] = await Promise.all([readBootId(), qemuVersion(emulator)]);
    selfTest = await readCachedSelfTest(cacheFile, bootId, version);
  }
  return { probe, tools, selfTest, verdict: verdictWithSelfTest(judgeKvm(probe), selfTest) };
}
