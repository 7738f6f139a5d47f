/**
 * The one assembly of a compute host: probe → the libvirt connection that
 * `[libvirt] connection_uri` names → the KVM self-test → the verdict with
 * all its evidence → the ComputeDriver. Every command that needs libvirt
 * (`run`, `validate`, `capabilities`, `cpu-compare`, `cpu-baseline`) and the
 * compute service come through here, so that they all judge the host alike
 * and all honour connection_uri.
 *
 * Which connection, for which purpose:
 * - connection_uri set (qemu:///system where a libvirtd runs, or any other
 *   URI): that URI, for the service and the commands alike.
 * - connection_uri empty (the default): the service embeds libvirt's QEMU
 *   driver at `<state_path>/libvirt`; the commands embed a root of their own
 *   from the pool under `<state_path>/run/libvirt` — libvirt lets one process
 *   hold an embedded root, and a command must work beside a running service.
 *   `run`'s transient instances go under `<state_path>/run/instances`, apart
 *   from the service's `instances_path`; the image cache is shared.
 */
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { effectiveConnectionUri } from '../config/effective-values.js';
import type { NovaletConfig } from '../config/novalet-config.js';
import type { KvmVerdict } from '../messaging/contracts/kvm-verdict.js';
import type { HostProbe } from './host/facts.js';
import { pathExists } from './host/path-exists.js';
import { probeHost } from './host/probe.js';
import { probeHostTools, type HostTools } from './host/tools.js';
import { sweepLeftovers, type SweepResult } from './instance/leftovers.js';
import { imageCacheFor, LibvirtDriver } from './instance/libvirt-driver.js';
import { LibvirtConnection } from './libvirt/connection.js';
import { embeddedRootOf, prepareEmbeddedRoot } from './libvirt/embedded-root.js';
import { openEmbeddedRootFromPool } from './libvirt/embedded-root-pool.js';
import { judgeKvm, selfTestNotNeeded } from './virt-type/decision.js';
import { bootSelfTestGuest } from './virt-type/self-test-boot.js';
import { emulatorStamp, kvmSelfTest, qemuVersion, readBootId, readRecordedSelfTest, SELF_TEST_CACHE, selfTestDidNotRun, type SelfTestResult } from './virt-type/self-test.js';
import { testGuestFiles } from './virt-type/test-guest.js';

/** The compute service, or one of the commands (see the file comment). */
export type HostPurpose = 'service' | 'command';

/**
 * What becomes of the self-test: 'recorded' takes this boot's result if
 * there is one and never boots a guest; 'run' boots one when this boot has
 * none; 'again' boots one whatever is recorded.
 */
export type SelfTestPolicy = 'recorded' | 'run' | 'again';

/** What is known of KVM here: the probe, the tools, this boot's self-test, the verdict on all of it. */
export interface KnownHost {
  probe: HostProbe;
  tools: HostTools;
  selfTest: SelfTestResult | null;
  /** Why there is no self-test result (a phrase), when there is none. */
  selfTestMissing: string | null;
  /** True when the self-test applies here and has not run in this boot: KVM is unproven. */
  selfTestPending: boolean;
  verdict: KvmVerdict;
}

export interface ComputeHost extends KnownHost {
  config: NovaletConfig;
  connection: LibvirtConnection;
  driver: LibvirtDriver;
  /** What the start-up sweep removed: leftovers of killed commands and self-tests. */
  swept: SweepResult;
  /** Closes the connection, unless it was given. */
  close(): Promise<void>;
}

export interface ComputeHostOptions {
  config: NovaletConfig;
  purpose: HostPurpose;
  selfTest: SelfTestPolicy;
  /** A connection already open (tests and benchmarks on their pools of roots); it stays open on close(). */
  connection?: LibvirtConnection;
  /** Told before each long phase, so that nobody waits in silence. */
  progress?: (what: string) => void;
  /** The command's lifetime: aborting it stops the self-test (its guest removed) and rejects with the reason. */
  signal?: AbortSignal;
}

/** The connection `[libvirt] connection_uri` names, for this purpose. */
export async function openHostConnection(config: NovaletConfig, purpose: HostPurpose): Promise<LibvirtConnection> {
  const configured = config.libvirt.connection_uri;
  if (configured === '' && purpose === 'command') {
    return (await openEmbeddedRootFromPool(path.join(config.DEFAULT.state_path, 'run', 'libvirt'))).connection;
  }
  const uri = effectiveConnectionUri(config);
  const root = embeddedRootOf(uri);
  return LibvirtConnection.open(root === null ? uri : await prepareEmbeddedRoot(root));
}

/** True when an embedded root has no QEMU capabilities cached yet: its first query makes libvirt probe every emulator. */
async function firstProbeAhead(connection: LibvirtConnection): Promise<boolean> {
  const root = embeddedRootOf(connection.uri);
  if (root === null) return false;
  try {
    return (await readdir(path.join(root, 'cache/qemu/capabilities'))).length === 0;
  } catch {
    return true;
  }
}

/** Where this purpose's instances live. */
export function instancesPathFor(config: NovaletConfig, purpose: HostPurpose): string {
  return purpose === 'service' ? config.DEFAULT.instances_path : path.join(config.DEFAULT.state_path, 'run', 'instances');
}

interface SelfTestPlan {
  /** null when the self-test does not apply here; `missing` says why. */
  emulator: string | null;
  missing: string | null;
  cacheFile: string;
}

function planSelfTest(config: NovaletConfig, probe: HostProbe, tools: HostTools): SelfTestPlan {
  const cacheFile = path.join(config.DEFAULT.state_path, SELF_TEST_CACHE);
  const notNeeded = selfTestNotNeeded(config.libvirt, probe);
  if (notNeeded !== null) return { emulator: null, missing: notNeeded, cacheFile };
  const emulator = tools.qemuEmulators[probe.arch];
  if (emulator === undefined) return { emulator: null, missing: `no QEMU system emulator for ${probe.arch} is installed to boot a test guest with`, cacheFile };
  return { emulator, missing: null, cacheFile };
}

const NOT_RUN = 'no guest has been booted under KVM in this boot';

async function recordedSelfTest(plan: SelfTestPlan): Promise<SelfTestResult | null> {
  if (plan.emulator === null || !(await pathExists(plan.cacheFile))) return null;
  return readRecordedSelfTest(plan.cacheFile, await readBootId(), plan.emulator);
}

/** What is known of KVM here without libvirt and without booting anything: the probe and this boot's recorded self-test. */
export async function knownHost(config: NovaletConfig): Promise<KnownHost> {
  const [probe, tools] = await Promise.all([probeHost(), probeHostTools()]);
  const plan = planSelfTest(config, probe, tools);
  const selfTest = await recordedSelfTest(plan);
  const pending = plan.emulator !== null && selfTest === null;
  const missing = plan.missing ?? (pending ? NOT_RUN : null);
  return { probe, tools, selfTest, selfTestMissing: missing, selfTestPending: pending, verdict: judgeKvm({ probe, selfTest }) };
}

export async function assembleComputeHost(options: ComputeHostOptions): Promise<ComputeHost> {
  const { config, purpose } = options;
  const [probe, tools, bootId] = await Promise.all([probeHost(), probeHostTools(), readBootId()]);
  const connection = options.connection ?? (await openHostConnection(config, purpose));
  try {
    if (await firstProbeAhead(connection)) {
      options.progress?.(`libvirt is probing QEMU for a new state folder (${embeddedRootOf(connection.uri)}): about 12 s, once`);
    }
    // Before anything new starts: what killed commands and self-tests left goes (never the service's instances).
    const swept = await sweepLeftovers({ connection, bootId, commandInstancesPath: instancesPathFor(config, 'command'), stateDir: config.DEFAULT.state_path });
    const plan = planSelfTest(config, probe, tools);
    let selfTest: SelfTestResult | null = null;
    let missing = plan.missing;
    if (plan.emulator !== null && options.selfTest === 'recorded') {
      selfTest = await recordedSelfTest(plan);
      if (selfTest === null) missing = NOT_RUN;
    } else if (plan.emulator !== null) {
      const guestDir = config.libvirt.kvm_selftest_guest_dir;
      if (!(await pathExists(testGuestFiles(guestDir).kernel))) {
        missing = `the self-test guest is missing from ${guestDir}, so KVM is judged by the host probe alone; build it with deploy/build-test-guest.sh ${guestDir}`;
      } else {
        const emulator = plan.emulator;
        const [version, stamp] = await Promise.all([qemuVersion(emulator), emulatorStamp(emulator)]);
        const timeoutMs = config.libvirt.kvm_selftest_timeout * 1000;
        const result = await kvmSelfTest({
          cacheFile: plan.cacheFile,
          bootId,
          qemuVersion: version,
          emulatorStamp: stamp,
          timeoutMs,
          again: options.selfTest === 'again',
          boot: (ms) => {
            options.progress?.(`checking that KVM really runs guests: booting a test guest under KVM (up to ${Math.round(ms / 1000)} s)`);
            return bootSelfTestGuest({
              connection,
              guestDir,
              emulator,
              arch: probe.arch,
              workDir: config.DEFAULT.state_path,
              timeoutMs: ms,
              bootId,
              ...(options.signal ? { signal: options.signal } : {}),
            });
          },
        });
        if (selfTestDidNotRun(result)) missing = `the self-test could not be run, for a reason that is not about KVM: ${result.notRun}`;
        else selfTest = result;
      }
    }
    const verdict = judgeKvm({ probe, selfTest });
    const instancesPath = instancesPathFor(config, purpose);
    const driver = new LibvirtDriver({
      connection,
      config,
      host: { arch: probe.arch, verdict, qemuEmulators: tools.qemuEmulators },
      instancesPath,
      imageCache: imageCacheFor(config, path.join(config.DEFAULT.instances_path, '_base')),
      owner: { kind: purpose === 'service' ? 'service' : 'command', pid: process.pid, bootId },
    });
    const owned = options.connection === undefined;
    return {
      config,
      probe,
      tools,
      selfTest,
      selfTestMissing: selfTest === null ? missing : null,
      selfTestPending: plan.emulator !== null && selfTest === null,
      verdict,
      connection,
      driver,
      swept,
      close: async () => {
        if (owned) await connection.close();
      },
    };
  } catch (err) {
    if (options.connection === undefined) await connection.close();
    throw err;
  }
}
