/**
 * The compute host's instances: their records (agent/instance-store.ts) and
 * the one way to change one — `change()`, which writes the new state and the
 * events that report it in one atomic write (the outbox publishes them).
 * Builds, operations and recovery (agent/builds.ts, agent/operations.ts,
 * agent/recovery.ts) are written in terms of it.
 */
import type { ComputeDriver, ValidInstanceSpec } from '../hypervisor/compute-driver.js';
import type { OutboxMessage } from '../service/outbox.js';
import type { BuildOrigin, InstanceFault, InstanceRecord } from './instance-record.js';
import type { InstanceMessages } from './instance-messages.js';
import type { InstanceStore } from './instance-store.js';

/** A build refused before it started: what its record keeps (the bus already checked these fields). */
export interface RefusedBuild {
  uuid: string;
  name: string;
  vcpus: number;
  memoryMiB: number;
  rootGb: number;
  flavorName: string;
}

export class ComputeInstances {
  constructor(
    readonly driver: ComputeDriver,
    readonly store: InstanceStore,
    readonly messages: InstanceMessages,
  ) {}

  get host(): string {
    return this.messages.host;
  }

  get(uuid: string): InstanceRecord | null {
    return this.store.get(uuid);
  }

  list(): InstanceRecord[] {
    return this.store.list();
  }

  /** Writes `record` changed by `change`, with `messages` to publish, durably; the stored record. */
  change(record: InstanceRecord, change: Partial<InstanceRecord>, messages: readonly OutboxMessage[] = []): Promise<InstanceRecord> {
    return this.store.commit({ ...record, ...change, updatedAt: new Date().toISOString() }, messages);
  }

  /** A build taken on: BUILDING, waiting for a slot (nova's task `scheduling`); its request kept for recovery. */
  accept(valid: ValidInstanceSpec, flavor: { rootGb: number; name: string }, origin: BuildOrigin): Promise<InstanceRecord> {
    const now = new Date().toISOString();
    return this.store.commit({
      uuid: valid.uuid,
      name: valid.name,
      host: this.host,
      state: 'building',
      task: 'scheduling',
      flavor: { vcpus: valid.vcpus, memoryMiB: valid.memoryMiB, ...flavor },
      image: valid.image ? { source: valid.image.source, sha256: valid.image.checksum?.slice('sha256:'.length) ?? null } : null,
      kernel: valid.kernel ?? null,
      virtType: null,
      virtTypeReason: null,
      fault: null,
      createdAt: now,
      updatedAt: now,
      origin,
    });
  }

  /**
   * A build refused before anything was touched (it did not fit, its image
   * is not here, the host is disabled): ERROR with the fault, no image; a
   * placed one handed back to the schedulers at once.
   */
  refused(build: RefusedBuild, fault: InstanceFault, origin: BuildOrigin, messages: readonly OutboxMessage[]): Promise<InstanceRecord> {
    const now = new Date().toISOString();
    return this.store.commit(
      {
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
        origin,
      },
      messages,
    );
  }

  /**
   * A lifecycle event said the guest stopped by itself (powered off) or
   * crashed: STOPPED, or ERROR with a GUEST_CRASHED fault, and `power.off`
   * (with the fault for a crash). An operation under way records its own outcome.
   */
  async guestStopped(uuid: string, crashed: boolean): Promise<InstanceRecord | null> {
    const record = this.store.get(uuid);
    if (!record || record.state === 'deleted' || record.origin?.rescheduledAt || record.task !== null) return null;
    // Already so (an operation that ran first recorded it, or a crash already was): nothing to say twice.
    if (record.state === 'stopped' || (record.state === 'error' && (crashed || record.fault?.code === 'GUEST_CRASHED')) || record.state === 'building') return null;
    // The event waited for an operation (a reboot, a start) that has the guest running again: it is history.
    const now = await this.driver.state(uuid).catch(() => null);
    if (now === 'running' || now === 'paused') return null;
    if (crashed) {
      const fault: InstanceFault = {
        code: 'GUEST_CRASHED',
        message: 'The guest crashed, or its QEMU process died.',
        remedy: "Look at the guest's console (the console call, or GET /v1/instances/{uuid}/console) and QEMU's log; start it again, or delete it.",
        at: new Date().toISOString(),
      };
      const event = this.messages.event({ event: 'power.off', uuid, state: 'error', fault: { code: fault.code, message: fault.message, remedy: fault.remedy ?? '' } });
      return this.change(record, { state: 'error', task: null, fault }, [event]);
    }
    return this.change(record, { state: 'stopped', task: null }, [this.messages.event({ event: 'power.off', uuid, state: 'stopped' })]);
  }
}
