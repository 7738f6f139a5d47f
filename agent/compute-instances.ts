import { NovaletError } from '../config/novalet-error.js';
import { validateInstanceSpec, type ComputeDriver, type InstanceSpec, type RebootType, type SpawnOptions, type ValidInstanceSpec } from '../hypervisor/compute-driver.js';
import type { BuildOrigin, InstanceFault, InstanceRecord, TaskState, VmState } from './instance-record.js';
import type { InstanceStore } from './instance-store.js';

/**
 * The compute host's instances: each operation goes through the compute
 * driver and moves the instance's record through nova's states. A failed
 * build ends in ERROR with its fault (cause, diagnosis, remedy) and nothing
 * left in the hypervisor or on disk; the record stays to say why.
 */
/** nova's [DEFAULT] shutdown_timeout: how long a guest has to power itself off. */
export const DEFAULT_CLEAN_SHUTDOWN_MS = 60_000;

/** A build refused before it started: what its record keeps (the bus already checked these fields). */
export interface RefusedBuild {
  uuid: string;
  name: string;
  vcpus: number;
  memoryMiB: number;
  rootGb: number;
  flavorName: string;
}

/** What a build from the bus records beside the spec. */
export interface BuildExtra {
  flavor?: { rootGb: number; name: string };
  origin?: BuildOrigin;
}

/** An error as an instance's fault: the code, the whole sentence, the remedy when the error has one. */
export function faultOf(err: unknown): InstanceFault {
  const known = err instanceof NovaletError;
  return {
    code: known ? err.code : 'INTERNAL',
    message: err instanceof Error ? err.message : String(err),
    ...(known && err.remedy ? { remedy: err.remedy } : {}),
    at: new Date().toISOString(),
  };
}

export class ComputeInstances {
  constructor(
    private readonly driver: ComputeDriver,
    private readonly store: InstanceStore,
    private readonly host: string,
  ) {}

  private async update(record: InstanceRecord, change: Partial<InstanceRecord>): Promise<InstanceRecord> {
    const next = { ...record, ...change, updatedAt: new Date().toISOString() };
    await this.store.write(next);
    return next;
  }

  private async record(uuid: string): Promise<InstanceRecord> {
    const record = await this.store.read(uuid);
    if (!record || record.state === 'deleted') {
      throw new NovaletError('INSTANCE_NOT_FOUND', `Instance ${uuid} is not on this host.`, 'Check the UUID against the instances this host reports.');
    }
    return record;
  }

  /**
   * The first half of a build: the spec checked and the BUILDING record
   * written (durable), or the record of the build that already happened.
   * `started` is false for such a repeat: nothing is to be done.
   */
  async begin(spec: InstanceSpec, extra: BuildExtra = {}): Promise<{ record: InstanceRecord; valid: ValidInstanceSpec; started: boolean }> {
    const valid = validateInstanceSpec(spec);
    const existing = await this.store.read(valid.uuid);
    // Idempotent by UUID: asking again for a build that happened returns it.
    if (existing && existing.state !== 'deleted' && !existing.origin?.rescheduledAt) return { record: existing, valid, started: false };
    // A build that went back to the schedulers, asked again by the same message, is that message's redelivery.
    if (existing?.origin?.rescheduledAt && extra.origin && existing.origin.messageId === extra.origin.messageId) return { record: existing, valid, started: false };
    const now = new Date().toISOString();
    const record = await this.update(
      {
        uuid: valid.uuid,
        name: valid.name,
        host: this.host,
        state: 'building',
        task: 'spawning',
        flavor: { vcpus: valid.vcpus, memoryMiB: valid.memoryMiB, ...(extra.flavor ?? {}) },
        image: valid.image ? { source: valid.image.source, sha256: valid.image.checksum?.slice('sha256:'.length) ?? null } : null,
        kernel: valid.kernel ?? null,
        virtType: null,
        virtTypeReason: null,
        fault: null,
        createdAt: now,
        updatedAt: now,
        ...(extra.origin ? { origin: extra.origin } : {}),
      },
      {},
    );
    return { record, valid, started: true };
  }

  /** The second half: the driver spawns the guest; the record ends ACTIVE, or ERROR with the fault. */
  async complete(record: InstanceRecord, valid: ValidInstanceSpec, options: SpawnOptions = {}): Promise<InstanceRecord> {
    try {
      const launched = await this.driver.spawn(valid, options);
      return await this.update(record, {
        state: 'active',
        task: null,
        virtType: launched.virtType,
        virtTypeReason: launched.virtTypeReason,
        image: launched.image ? { source: valid.image?.source ?? '', sha256: launched.image.sha256 } : record.image,
      });
    } catch (err) {
      // Aborted (the service is stopping): the driver removed what it made, the record stays BUILDING for the next start.
      if (options.signal?.aborted) throw err;
      return this.update(record, { state: 'error', task: null, fault: faultOf(err) });
    }
  }

  async spawn(spec: InstanceSpec, extra: BuildExtra = {}, options: SpawnOptions = {}): Promise<InstanceRecord> {
    const { record, valid, started } = await this.begin(spec, extra);
    return started ? this.complete(record, valid, options) : record;
  }

  /** Marks a record: the build went back to the schedulers, so the instance is not this host's any more. */
  async handedBack(record: InstanceRecord): Promise<InstanceRecord> {
    if (!record.origin) return record;
    return this.update(record, { origin: { ...record.origin, rescheduledAt: new Date().toISOString() } });
  }

  /**
   * Records a build refused before anything was touched (it did not fit, its
   * image is not here, the host is disabled): ERROR with the fault, no image.
   * Nothing is written over an instance this host already has.
   */
  async refused(build: RefusedBuild, fault: InstanceFault, origin?: BuildOrigin): Promise<InstanceRecord | null> {
    const existing = await this.store.read(build.uuid);
    if (existing && existing.state !== 'deleted' && !existing.origin?.rescheduledAt) return null;
    const now = new Date().toISOString();
    const record: InstanceRecord = {
      uuid: build.uuid,
      name: build.name,
      host: this.host,
      state: 'error',
      task: null,
      flavor: { vcpus: build.vcpus, memoryMiB: build.memoryMiB, rootGb: build.rootGb, name: build.flavorName },
      image: null,
      kernel: null,
      virtType: null,
      virtTypeReason: null,
      fault,
      createdAt: now,
      updatedAt: now,
      ...(origin ? { origin } : {}),
    };
    await this.store.write(record);
    return record;
  }

  /** Ends a BUILDING record whose build cannot be finished (recovery). */
  async failBuild(record: InstanceRecord, fault: InstanceFault): Promise<InstanceRecord> {
    return this.update(record, { state: 'error', task: null, fault });
  }

  /** Adopts a running guest whose build was interrupted after libvirt started it (recovery). */
  async adopt(record: InstanceRecord, change: Partial<InstanceRecord>): Promise<InstanceRecord> {
    return this.update(record, { task: null, ...change });
  }

  private async operate(uuid: string, task: TaskState, action: () => Promise<void>, after: VmState): Promise<InstanceRecord> {
    let record = await this.update(await this.record(uuid), { task });
    try {
      await action();
    } catch (err) {
      await this.update(record, { task: null });
      throw err;
    }
    record = await this.update(record, { task: null, state: after });
    return record;
  }

  /** nova's stop: the ACPI power button, then a hard stop after `timeoutMs` (0: at once). */
  stop(uuid: string, timeoutMs = DEFAULT_CLEAN_SHUTDOWN_MS): Promise<InstanceRecord> {
    return this.operate(uuid, 'powering-off', async () => void (await this.driver.powerOff(uuid, timeoutMs)), 'stopped');
  }

  start(uuid: string): Promise<InstanceRecord> {
    return this.operate(uuid, 'powering-on', () => this.driver.powerOn(uuid), 'active');
  }

  reboot(uuid: string, type: RebootType = 'SOFT'): Promise<InstanceRecord> {
    // TODO(lead): reboot.end's `type` is what the driver resolves with (a SOFT one the guest ignores ends 'HARD'); the driver waits its configured wait_soft_reboot_seconds.
    return this.operate(uuid, type === 'SOFT' ? 'rebooting' : 'rebooting_hard', async () => void (await this.driver.reboot(uuid, type)), 'active');
  }

  delete(uuid: string): Promise<InstanceRecord> {
    return this.operate(uuid, 'deleting', () => this.driver.destroy(uuid), 'deleted');
  }

  /** A lifecycle event said the guest stopped by itself (powered off) or crashed. */
  async guestStopped(uuid: string, crashed: boolean): Promise<InstanceRecord | null> {
    const record = await this.store.read(uuid);
    // An operation under way (destroy, power off, delete, reboot) records its own outcome.
    if (!record || record.state === 'deleted' || record.task !== null) return null;
    if (crashed) {
      return this.update(record, { state: 'error', task: null, fault: { code: 'GUEST_CRASHED', message: 'The guest crashed.', at: new Date().toISOString() } });
    }
    return this.update(record, { state: 'stopped', task: null });
  }

  get(uuid: string): Promise<InstanceRecord | null> {
    return this.store.read(uuid);
  }

  list(): Promise<InstanceRecord[]> {
    return this.store.list();
  }
}
