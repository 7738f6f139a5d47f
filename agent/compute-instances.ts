import { NovaletError } from '../config/novalet-error.js';
import { validateInstanceSpec, type ComputeDriver, type InstanceSpec, type RebootType } from '../hypervisor/compute-driver.js';
import type { InstanceFault, InstanceRecord, TaskState, VmState } from './instance-record.js';
import type { InstanceStore } from './instance-store.js';

/**
 * The compute host's instances: each operation goes through the compute
 * driver and moves the instance's record through nova's states. A failed
 * build ends in ERROR with its fault (cause, diagnosis, remedy) and nothing
 * left in the hypervisor or on disk; the record stays to say why.
 */
/** nova's [DEFAULT] shutdown_timeout: how long a guest has to power itself off. */
export const DEFAULT_CLEAN_SHUTDOWN_MS = 60_000;

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

  async spawn(spec: InstanceSpec): Promise<InstanceRecord> {
    const valid = validateInstanceSpec(spec);
    const existing = await this.store.read(valid.uuid);
    // Idempotent by UUID: asking again for a build that happened returns it.
    if (existing && existing.state !== 'deleted') return existing;
    const now = new Date().toISOString();
    let record = await this.update(
      {
        uuid: valid.uuid,
        name: valid.name,
        host: this.host,
        state: 'building',
        task: 'spawning',
        flavor: { vcpus: valid.vcpus, memoryMiB: valid.memoryMiB },
        image: valid.image ? { source: valid.image.source, sha256: valid.image.checksum?.slice('sha256:'.length) ?? null } : null,
        kernel: valid.kernel ?? null,
        virtType: null,
        virtTypeReason: null,
        fault: null,
        createdAt: now,
        updatedAt: now,
      },
      {},
    );
    try {
      const launched = await this.driver.spawn(valid);
      record = await this.update(record, {
        state: 'active',
        task: null,
        virtType: launched.virtType,
        virtTypeReason: launched.virtTypeReason,
        image: launched.image ? { source: valid.image?.source ?? '', sha256: launched.image.sha256 } : record.image,
      });
      return record;
    } catch (err) {
      const fault: InstanceFault = {
        code: err instanceof NovaletError ? err.code : 'INTERNAL',
        message: (err as Error).message,
        at: new Date().toISOString(),
      };
      return this.update(record, { state: 'error', task: null, fault });
    }
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
    return this.operate(uuid, type === 'SOFT' ? 'rebooting' : 'rebooting_hard', () => this.driver.reboot(uuid, type), 'active');
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
