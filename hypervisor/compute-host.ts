/**
 * The one assembly of a compute host: probe → the libvirt connection that
 * `[libvirt] connection_uri` names → the start-up sweep → the KVM self-test
 * (virt-type/self-test-plan.ts: which policy, the record, the boot) → the
 * verdict with all its evidence and the host's virt type, decided once here
 * (`virtType`, virt-type/known-host.ts) → the ComputeDriver, handed what it
 * needs. Nothing below this file assembles anything. Every command that
 * needs libvirt (`run`, `validate`, `capabilities`, `cpu-compare`,
 * `cpu-baseline`) and the compute service come through here, so that they
 * all judge the host alike and all honour connection_uri.
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
import { probeHost } from './host/probe.js';
import { probeHostTools } from './host/tools.js';
import { sweepLeftovers, type SweepResult } from './instance/leftovers.js';
import { imageCacheFor, LibvirtDriver } from './instance/libvirt-driver.js';
import { abandonedCalls } from './libvirt/abandoned-calls.js';
import { LibvirtConnection } from './libvirt/connection.js';
import { embeddedRootOf, prepareEmbeddedRoot } from './libvirt/embedded-root.js';
import { openEmbeddedRootFromPool } from './libvirt/embedded-root-pool.js';
import { judgeHost, type KnownHost } from './virt-type/known-host.js';
import { settleSelfTest, type SelfTestPolicy } from './virt-type/self-test-plan.js';
import { readBootId } from './virt-type/self-test.js';

export { knownHost, type KnownHost } from './virt-type/known-host.js';
export type { SelfTestPolicy } from './virt-type/self-test-plan.js';

/** The compute service, or one of the commands (see the file comment). */
export type HostPurpose = 'service' | 'command';

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
  /** The command's lifetime: aborting it stops the assembly and the self-test (its guest removed), and rejects with the reason. */
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

export async function assembleComputeHost(options: ComputeHostOptions): Promise<ComputeHost> {
  const { config, purpose } = options;
  const [probe, tools, bootId] = await Promise.all([probeHost(), probeHostTools(), readBootId()]);
  options.signal?.throwIfAborted();
  const connection = options.connection ?? (await openHostConnection(config, purpose));
  try {
    options.signal?.throwIfAborted();
    if (await firstProbeAhead(connection)) {
      options.progress?.(`libvirt is probing QEMU for a new state folder (${embeddedRootOf(connection.uri)}): about 12 s, once`);
    }
    // Before anything new starts: what killed commands and self-tests left goes (never the service's instances).
    const swept = await sweepLeftovers({ connection, bootId, commandInstancesPath: instancesPathFor(config, 'command'), stateDir: config.DEFAULT.state_path });
    const settled = await settleSelfTest({ config, probe, tools, connection, bootId, policy: options.selfTest, progress: options.progress, signal: options.signal });
    const { verdict, virtType } = judgeHost(config, probe, settled.selfTest);
    const instancesPath = instancesPathFor(config, purpose);
    const driver = new LibvirtDriver({
      connection,
      config,
      host: { arch: probe.arch, verdict, virtType, qemuEmulators: tools.qemuEmulators },
      instancesPath,
      imageCache: imageCacheFor(config, path.join(config.DEFAULT.instances_path, '_base')),
      owner: { kind: purpose === 'service' ? 'service' : 'command', pid: process.pid, bootId },
    });
    const owned = options.connection === undefined;
    return {
      config,
      probe,
      tools,
      selfTest: settled.selfTest,
      selfTestMissing: settled.missing,
      selfTestPending: settled.pending,
      verdict,
      virtType,
      connection,
      driver,
      swept,
      close: async () => {
        if (owned) await closeUnlessAbandoned(connection);
      },
    };
  } catch (err) {
    if (options.connection === undefined) await closeUnlessAbandoned(connection);
    throw err;
  }
}

/**
 * Closes the connection; while a call abandoned at an abort still runs on it
 * (libvirt's probe of QEMU, libvirt/abandoned-calls.ts), the close waits for
 * it in the background instead, so that nobody waits for what they stopped
 * waiting for: a command's process exits meanwhile (cli/main.ts).
 */
async function closeUnlessAbandoned(connection: LibvirtConnection): Promise<void> {
  if (abandonedCalls() === 0) return connection.close();
  void connection.close().catch(() => undefined);
}
