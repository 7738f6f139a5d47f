/**
 * The boundary between the compute agent and the hypervisor, as nova's
 * `nova/virt/driver.py` ComputeDriver: what the agent may ask of a host's
 * hypervisor, and nothing of how. agent/ imports this file only; the
 * libvirt implementation is instance/libvirt-driver.ts, assembled by
 * compute-host.ts; a fake one (test/support/fake-compute-driver.ts) lets the
 * agent's own logic be tested without libvirt, and the same contract tests
 * (test/hypervisor/compute-driver-contract.ts) hold both to this file.
 *
 * Every method that names an instance throws a NovaletError with code
 * INSTANCE_NOT_FOUND when the driver has no such instance, except
 * destroy(), which, as nova's, is done when there is nothing left.
 */
import type { HypervisorCapabilities } from '../messaging/contracts/capability-report.js';
import type { EffectiveVirtType } from '../messaging/contracts/kvm-verdict.js';
import type { HostCpuReport } from './cpu/host-report.js';
import type { ValidInstanceSpec } from './instance/spec.js';

export { validateInstanceSpec, type InstanceSpec, type ValidInstanceSpec } from './instance/spec.js';

/** nova's power_state, lower case: what the hypervisor says of a guest. */
export type PowerState = 'running' | 'paused' | 'shutdown' | 'crashed' | 'suspended' | 'nostate';

export interface SpawnedInstance {
  uuid: string;
  virtType: EffectiveVirtType;
  /** Why that virt type: the decision's sentence (virt-type/decision.ts). */
  virtTypeReason: string;
  /** The cached image the root disk overlays, if the instance has one. */
  image: { sha256: string; format: string } | null;
  /** The guest CPU setting used, and what stood in for the configured one, if anything did. */
  guestCpu: { setting: string; substitution: string | null };
}

export interface DriverInstance {
  uuid: string;
  state: PowerState;
}

export type InstanceTransition = 'started' | 'stopped' | 'crashed' | 'paused' | 'resumed';

/** A change of a guest's state that the hypervisor reports by itself (nova's virt LifecycleEvent). */
export interface InstanceLifecycleEvent {
  uuid: string;
  transition: InstanceTransition;
  /** For 'stopped': the guest powered itself off, rather than being stopped from outside. */
  byGuest: boolean;
  /** The hypervisor's own word for it ('shutdown', 'destroyed', 'panicked', …), for logs. */
  detail: string;
}

/** Stops the subscription; `ready` settles once events are being delivered. */
export type LifecycleSubscription = (() => void) & { ready: Promise<void> };

/** What the host's hypervisor offers, as capability reports carry it, with the CPU detail behind it. */
export interface DriverHostCapabilities extends HypervisorCapabilities {
  /** Per virt type, the usable models and host-model; the guest CPU instances get (`novalet capabilities`). */
  cpu: HostCpuReport;
}

export type RebootType = 'SOFT' | 'HARD';

export interface SpawnOptions {
  /**
   * Aborting it stops the image download (the longest step), which then
   * fails with IMAGE_DOWNLOAD_ABORTED and leaves nothing behind.
   */
  signal?: AbortSignal | undefined;
}

export interface ComputeDriver {
  /**
   * Creates and starts the instance: virt type decided, image fetched,
   * guest defined and started. A spawn that fails leaves nothing behind;
   * one for a UUID the driver already has fails with INSTANCE_EXISTS.
   */
  spawn(spec: ValidInstanceSpec, options?: SpawnOptions): Promise<SpawnedInstance>;
  /** Stops the guest and removes it and its files; nothing left is not an error. */
  destroy(uuid: string): Promise<void>;
  /**
   * SOFT: the guest is asked (ACPI), and must be running (else
   * INSTANCE_NOT_RUNNING); HARD: it is power-cycled, running or not. It runs
   * afterwards either way.
   */
  reboot(uuid: string, type: RebootType): Promise<void>;
  /**
   * nova's clean shutdown: the ACPI power button, `timeoutMs` for the guest
   * to power itself off, then the plug pulled; 0 pulls it at once.
   */
  powerOff(uuid: string, timeoutMs: number): Promise<'clean' | 'forced'>;
  powerOn(uuid: string): Promise<void>;
  state(uuid: string): Promise<PowerState>;
  /** The driver's instances, running or not. */
  list(): Promise<DriverInstance[]>;
  /** The last `lines` lines of the guest's serial console. */
  consoleOutput(uuid: string, lines: number): Promise<string[]>;
  hostCapabilities(): Promise<DriverHostCapabilities>;
  /** Calls `listener` for state changes the hypervisor reports, on the main thread. */
  onLifecycleEvent(listener: (event: InstanceLifecycleEvent) => void): LifecycleSubscription;
}
