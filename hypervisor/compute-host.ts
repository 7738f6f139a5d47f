import path from 'node:path';
import type { NovaletConfig } from '../config/novalet-config.js';
import type { HostProbe, KvmVerdict } from './host/facts.js';
import { probeHost } from './host/probe.js';
import { probeHostTools, type HostTools } from './host/tools.js';
import type { LaunchHost } from './instance/libvirt-driver.js';
import { bootSelfTestGuest } from './virt-type/self-test-boot.js';
import { kvmDeviceWorks, kvmSelfTest, qemuVersion, readBootId, SELF_TEST_CACHE, verdictWithSelfTest, type SelfTestResult } from './virt-type/self-test.js';
import { judgeKvm } from './virt-type/kvm-reasons.js';
import type { LibvirtConnection } from './libvirt/connection.js';
import { testGuestFiles } from './virt-type/test-guest.js';
import { pathExists } from './host/path-exists.js';

/**
 * What the launch path knows of this host: the probe, the tools, and the
 * KVM verdict with the self-test's evidence. The self-test runs when the
 * configuration wants KVM and /dev/kvm answers at the ioctl level — then
 * only a booted guest can tell whether KVM really works.
 */
export interface PreparedHost extends LaunchHost {
  probe: HostProbe;
  tools: HostTools;
  /** The verdict of the host probe alone. */
  probeVerdict: KvmVerdict;
  /** null when it did not run; `selfTestSkipped` then says why. */
  selfTest: SelfTestResult | null;
  selfTestSkipped: string | null;
}


export async function prepareHost(options: { config: NovaletConfig; connection: LibvirtConnection; workDir: string }): Promise<PreparedHost> {
  const { config, connection } = options;
  const [probe, tools] = await Promise.all([probeHost(), probeHostTools()]);
  const probeVerdict = judgeKvm(probe);
  const emulator = tools.qemuEmulators[probe.arch];
  let selfTest: SelfTestResult | null = null;
  let selfTestSkipped: string | null = null;
  const guestDir = config.libvirt.kvm_selftest_guest_dir;
  if (config.libvirt.virt_type !== 'kvm') {
    selfTestSkipped = `[libvirt] virt_type = ${config.libvirt.virt_type}: KVM is not wanted.`;
  } else if (!kvmDeviceWorks(probe)) {
    selfTestSkipped = '/dev/kvm does not answer as KVM: there is no KVM to test.';
  } else if (!emulator) {
    selfTestSkipped = `No QEMU system emulator for ${probe.arch}.`;
  } else if (!(await pathExists(testGuestFiles(guestDir).kernel))) {
    selfTestSkipped = `The self-test guest is missing from ${guestDir}; KVM is judged by the host probe alone. Build it with deploy/build-test-guest.sh ${guestDir}.`;
  } else {
    const [bootId, version] = await Promise.all([readBootId(), qemuVersion(emulator)]);
    selfTest = await kvmSelfTest({
      cacheFile: path.join(config.DEFAULT.state_path, SELF_TEST_CACHE),
      bootId,
      qemuVersion: version,
      timeoutMs: config.libvirt.kvm_selftest_timeout * 1000,
      boot: (timeoutMs) => bootSelfTestGuest({ connection, guestDir, emulator, arch: probe.arch, workDir: options.workDir, timeoutMs }),
    });
  }
  return {
    arch: probe.arch,
    probe,
    tools,
    probeVerdict,
    selfTest,
    selfTestSkipped,
    verdict: verdictWithSelfTest(probeVerdict, selfTest),
    qemuEmulators: tools.qemuEmulators,
  };
}
