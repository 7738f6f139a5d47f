/**
 * The ComputeDriver interface (nova's nova/virt/driver.py ComputeDriver) and
 * the types it speaks, kept in this room so that the libvirt driver beside it
 * implements it without importing upwards; hypervisor/compute-driver.ts, the
 * one file agent/ imports, re-exports them and says what the boundary is.
 */
import type { HypervisorCapabilities } from '../../messaging/contracts/capability-report.js';
import type { EffectiveVirtType } from '../../messaging/contracts/kvm-verdict.js';
import type { HostCpuReport } from '../cpu/host-report.js';
import type { ValidInstanceSpec } from './spec.js';

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
   * Aborting it stops the spawn at whatever it is doing — the image
   * download, qemu-img, the kernel copies, libvirt's first probe of QEMU,
   * the definition, the start — promptly, removes whatever the spawn had
   * made (domain, instance folder, partial download), and the spawn rejects
   * with the signal's reason. A delete of a building instance aborts it so.
   */
  signal?: AbortSignal | undefined;
}

export interface RebootOptions {
  /**
   * SOFT only: how long the guest has to shut itself down after the ACPI
   * power button before it is rebooted HARD (nova's `[libvirt]
   * wait_soft_reboot_seconds`); the driver's configured value when absent.
   */
  softTimeoutMs?: number | undefined;
  /** Stops waiting for the guest (SOFT) and rejects with the reason; the guest is left as it is then. */
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
   * nova's reboot. SOFT (the guest must be running, else
   * INSTANCE_NOT_RUNNING): the ACPI power button, up to `softTimeoutMs` for
   * the guest to shut itself off, then it is started again from its
   * definition — 'SOFT'; a guest that does not shut off in time (or a
   * libvirt failure on the way) is rebooted HARD instead, as nova's
   * `_soft_reboot` falls back to `_hard_reboot`. HARD: power-cycled from its
   * definition, running or not — 'HARD'. Resolves with how it was rebooted;
   * the guest runs afterwards either way. Lifecycle events report the
   * guest's stop and start on the way (a SOFT one as stopped by the guest).
   */
  reboot(uuid: string, type: RebootType, options?: RebootOptions): Promise<RebootType>;
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
