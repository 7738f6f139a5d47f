/**
 * The KVM self-test as a host's assembly runs it: whether it applies here,
 * which policy the caller chose, this boot's recorded result, booting the
 * test guest when there is none (or when asked again), and recording what it
 * showed. compute-host.ts assembles the host and passes what this needs in
 * (the connection, the probe, the boot's id); nothing here opens libvirt.
 */
import path from 'node:path';
import type { NovaletConfig } from '../../config/novalet-config.js';
import type { HostProbe } from '../host/facts.js';
import { pathExists } from '../host/path-exists.js';
import type { HostTools } from '../host/tools.js';
import type { LibvirtConnection } from '../libvirt/connection.js';
import { selfTestNotNeeded } from './decision.js';
import { bootSelfTestGuest } from './self-test-boot.js';
import { emulatorStamp, kvmSelfTest, qemuVersion, readBootId, readRecordedSelfTest, SELF_TEST_CACHE, selfTestDidNotRun, type SelfTestResult } from './self-test.js';
import { testGuestFiles } from './test-guest.js';

/**
 * What becomes of the self-test: 'recorded' takes this boot's result if
 * there is one and never boots a guest; 'run' boots one when this boot has
 * none; 'again' boots one whatever is recorded.
 */
export type SelfTestPolicy = 'recorded' | 'run' | 'again';

export const SELF_TEST_NOT_RUN = 'no guest has been booted under KVM in this boot';

export interface SelfTestPlan {
  /** The emulator to boot the guest with; null when the self-test does not apply here, and `missing` says why. */
  emulator: string | null;
  missing: string | null;
  cacheFile: string;
}

export function planSelfTest(config: NovaletConfig, probe: HostProbe, tools: HostTools): SelfTestPlan {
  const cacheFile = path.join(config.DEFAULT.state_path, SELF_TEST_CACHE);
  const notNeeded = selfTestNotNeeded(config.libvirt, probe);
  if (notNeeded !== null) return { emulator: null, missing: notNeeded, cacheFile };
  const emulator = tools.qemuEmulators[probe.arch];
  if (emulator === undefined) return { emulator: null, missing: `no QEMU system emulator for ${probe.arch} is installed to boot a test guest with`, cacheFile };
  return { emulator, missing: null, cacheFile };
}

/** This boot's recorded result, when the self-test applies and one was recorded. */
export async function recordedSelfTest(plan: SelfTestPlan): Promise<SelfTestResult | null> {
  if (plan.emulator === null || !(await pathExists(plan.cacheFile))) return null;
  return readRecordedSelfTest(plan.cacheFile, await readBootId(), plan.emulator);
}

export interface SelfTestSettled {
  selfTest: SelfTestResult | null;
  /** Why there is none (a phrase), when there is none. */
  missing: string | null;
  /** The self-test applies here and has no result in this boot: KVM is unproven. */
  pending: boolean;
}

/**
 * The self-test's result under `policy`: recorded, or booted on
 * `connection` (the guest removed whatever happens; `signal` stops the boot
 * and rejects with its reason).
 */
export async function settleSelfTest(options: {
  config: NovaletConfig;
  probe: HostProbe;
  tools: HostTools;
  connection: LibvirtConnection;
  bootId: string;
  policy: SelfTestPolicy;
  progress?: ((what: string) => void) | undefined;
  signal?: AbortSignal | undefined;
}): Promise<SelfTestSettled> {
  const { config, probe } = options;
  const plan = planSelfTest(config, probe, options.tools);
  const settled = (selfTest: SelfTestResult | null, missing: string | null): SelfTestSettled => ({
    selfTest,
    missing: selfTest === null ? missing : null,
    pending: plan.emulator !== null && selfTest === null,
  });
  if (plan.emulator === null) return settled(null, plan.missing);
  if (options.policy === 'recorded') {
    const recorded = await recordedSelfTest(plan);
    return settled(recorded, SELF_TEST_NOT_RUN);
  }
  const guestDir = config.libvirt.kvm_selftest_guest_dir;
  if (!(await pathExists(testGuestFiles(guestDir).kernel))) {
    return settled(null, `the self-test guest is missing from ${guestDir}, so KVM is judged by the host probe alone; build it with deploy/build-test-guest.sh ${guestDir}`);
  }
  const emulator = plan.emulator;
  const [version, stamp] = await Promise.all([qemuVersion(emulator), emulatorStamp(emulator)]);
  const result = await kvmSelfTest({
    cacheFile: plan.cacheFile,
    bootId: options.bootId,
    qemuVersion: version,
    emulatorStamp: stamp,
    timeoutMs: config.libvirt.kvm_selftest_timeout * 1000,
    again: options.policy === 'again',
    boot: (ms) => {
      options.progress?.(`checking that KVM really runs guests: booting a test guest under KVM (up to ${Math.round(ms / 1000)} s)`);
      return bootSelfTestGuest({
        connection: options.connection,
        guestDir,
        emulator,
        arch: probe.arch,
        workDir: config.DEFAULT.state_path,
        timeoutMs: ms,
        bootId: options.bootId,
        ...(options.signal ? { signal: options.signal } : {}),
      });
    },
  });
  if (selfTestDidNotRun(result)) return settled(null, `the self-test could not be run, for a reason that is not about KVM: ${result.notRun}`);
  return settled(result, null);
}
