/**
 * The casts that change an instance — delete, stop, start, reboot — as
 * nova's compute manager carries them out: the task and the request are
 * recorded first (so that a crash in the middle is finished by the next
 * start and answered under the same ids), then the driver acts, then the new
 * state is written with its event. Every cast gets an answer:
 *
 * - done: `delete.end`, `power.off`, `power.on` or `reboot.end`;
 * - asked again once done (a redelivery, or the same ask twice): the same
 *   event again (`delete.end` of a deleted instance, `power.off` of a stopped one);
 * - not possible: `action.error` with the fault — the instance left as it
 *   was when nothing changed (stop, start), ERROR when the driver failed
 *   half-way (delete, reboot: as nova sets them ERROR); an unknown instance,
 *   a full disk or a building one included.
 *
 * A delete wins over a build under way: the build is aborted at once (agent/builds.ts).
 */
import type { NovaletConfig } from '../config/novalet-config.js';
import type { Logger } from '../config/logger.js';
import { isDiskFull } from '../config/disk-full.js';
import { NovaletError } from '../config/novalet-error.js';
import type { RebootType } from '../hypervisor/compute-driver.js';
import type { FailedAction } from '../messaging/contracts/instance-event.js';
import type { KeyedLock } from '../service/keyed-lock.js';
import type { Outbox, OutboxMessage } from '../service/outbox.js';
import type { Builds } from './builds.js';
import type { ComputeInstances } from './compute-instances.js';
import { faultOf, notHere, wireFault } from './faults.js';
import type { InstanceFault, InstanceRecord, TaskState, VmState } from './instance-record.js';
import { isGone } from './instance-store.js';
import type { ServiceMetrics } from './metrics.js';

export interface OperationsContext {
  config: () => NovaletConfig;
  instances: ComputeInstances;
  builds: Builds;
  outbox: Outbox;
  locks: KeyedLock;
  log: Logger;
  metrics: ServiceMetrics;
  changed: () => void;
}

export type Operation = { kind: 'delete' | 'stop' | 'start'; uuid: string } | { kind: 'reboot'; uuid: string; type: RebootType };

const TASKS: Record<Operation['kind'], (op: Operation) => TaskState> = {
  delete: () => 'deleting',
  stop: () => 'powering-off',
  start: () => 'powering-on',
  reboot: (op) => (op.kind === 'reboot' && op.type === 'HARD' ? 'rebooting_hard' : 'rebooting'),
};

function busy(uuid: string, kind: string): NovaletError {
  return new NovaletError('INSTANCE_BUSY', `Instance ${uuid} is being built, so it cannot be ${kind === 'stop' ? 'stopped' : kind === 'start' ? 'started' : 'rebooted'} now.`, `Send the ${kind} again once the instance is active (its create.end), or delete it: a delete stops the build.`);
}

export class Operations {
  constructor(private readonly ctx: OperationsContext) {}

  /** Carries out `op` (the request with envelope id `requestId`) and answers it; resolves once the answer is on disk or confirmed. */
  async run(op: Operation, requestId: string): Promise<void> {
    const { builds, locks } = this.ctx;
    if (op.kind === 'delete') builds.abortFor(op.uuid);
    else if (builds.isUnderway(op.uuid)) {
      await this.#refuse(op, requestId, this.ctx.instances.get(op.uuid)?.state ?? 'building', faultOf(busy(op.uuid, op.kind)));
      return;
    }
    await locks.run(op.uuid, () => this.#locked(op, requestId));
  }

  async #locked(op: Operation, requestId: string): Promise<void> {
    const { instances, metrics } = this.ctx;
    const uuid = op.uuid;
    let record = instances.get(uuid);
    if (!record || isGone(record)) {
      if (op.kind === 'delete' && record?.state === 'deleted') {
        await this.#answer([instances.messages.event({ event: 'delete.end', uuid, state: 'deleted' }, requestId)]);
      } else {
        await this.#refuse(op, requestId, 'deleted', faultOf(notHere(uuid)));
      }
      return;
    }
    if (op.kind !== 'delete' && record.state === 'building') {
      // A build taken on but not yet holding the instance (or one a restart is about to resume): as busy as one under way.
      await this.#refuse(op, requestId, 'building', faultOf(busy(uuid, op.kind)));
      return;
    }
    const already = this.#alreadyDone(op, record, requestId);
    if (already) {
      await this.#answer([already]);
      return;
    }
    if (op.kind === 'reboot' && op.type === 'SOFT' && record.state !== 'active') {
      // nova refuses a soft reboot of an instance that does not run (InstanceInvalidState): nothing is done.
      const refusal = new NovaletError('INSTANCE_NOT_RUNNING', `Instance ${uuid} is ${record.state}, so it cannot be rebooted softly: a SOFT reboot asks a running guest.`, 'Start it, or reboot it HARD.');
      await this.#refuse(op, requestId, record.state, faultOf(refusal));
      return;
    }
    try {
      record = await instances.change(record, { task: TASKS[op.kind](op), request: { id: requestId, kind: op.kind, ...(op.kind === 'reboot' ? { type: op.type } : {}) } });
    } catch (err) {
      // Nothing was done: the instance stays as it was.
      await this.#refuse(op, requestId, record.state, faultOf(err));
      return;
    }
    let done: { change: Partial<InstanceRecord>; event: OutboxMessage };
    try {
      done = await this.#act(op, record, requestId);
    } catch (err) {
      const fault = faultOf(err);
      // nova sets an instance whose delete or reboot failed half-way to ERROR; a failed stop or start leaves it as it was.
      const state: VmState = op.kind === 'delete' || op.kind === 'reboot' ? 'error' : record.state;
      this.ctx.log.warn({ uuid, action: op.kind, code: fault.code }, `${op.kind} failed: ${fault.message}`);
      const { request: _request, ...rest } = record;
      const answer = this.#actionError(op, requestId, state, fault);
      await this.#commitOrAnswer(rest, { state, task: null, fault, lastAnswer: { requestId, message: answer } }, [answer]);
      metrics.actionFailed(op.kind, fault.code);
      this.ctx.changed();
      return;
    }
    const { request: _request, ...rest } = record;
    await this.#commitOrAnswer(rest, { task: null, ...done.change, lastAnswer: { requestId, message: done.event } }, [done.event]);
    if (op.kind === 'delete') metrics.deleted();
    this.ctx.changed();
  }

  /** The driver's part; what the record becomes and the event that says so. */
  async #act(op: Operation, record: InstanceRecord, requestId: string): Promise<{ change: Partial<InstanceRecord>; event: OutboxMessage }> {
    const { driver, messages } = this.ctx.instances;
    const { uuid } = record;
    const config = this.ctx.config();
    switch (op.kind) {
      case 'delete':
        await driver.destroy(uuid);
        return { change: { state: 'deleted' }, event: messages.event({ event: 'delete.end', uuid, state: 'deleted' }, requestId) };
      case 'stop':
        await driver.powerOff(uuid, config.DEFAULT.shutdown_timeout * 1000);
        return { change: { state: 'stopped' }, event: messages.event({ event: 'power.off', uuid, state: 'stopped' }, requestId) };
      case 'start':
        await driver.powerOn(uuid);
        // A crash's fault is history once the guest runs again.
        return { change: { state: 'active', fault: null }, event: messages.event({ event: 'power.on', uuid, state: 'active' }, requestId) };
      case 'reboot': {
        const how = await driver.reboot(uuid, op.type, { softTimeoutMs: config.libvirt.wait_soft_reboot_seconds * 1000 });
        if (how !== op.type) this.ctx.log.warn({ uuid, requested: op.type, rebooted: how }, `the guest did not shut down within [libvirt] wait_soft_reboot_seconds (${config.libvirt.wait_soft_reboot_seconds} s): it was rebooted hard`);
        return { change: { state: 'active', fault: null }, event: messages.event({ event: 'reboot.end', uuid, state: 'active', type: how, requested_type: op.type }, requestId) };
      }
    }
  }

  /** An ask for what is so already: its answer, or null when there is something to do. */
  #alreadyDone(op: Operation, record: InstanceRecord, requestId: string): OutboxMessage | null {
    const { messages } = this.ctx.instances;
    const { uuid } = record;
    if (record.task !== null) return null;
    // A redelivery of the request finished last (a reboot above all: never done twice): its answer again, same id.
    if (record.lastAnswer?.requestId === requestId) return record.lastAnswer.message;
    if (op.kind === 'stop' && record.state === 'stopped') return messages.event({ event: 'power.off', uuid, state: 'stopped' }, requestId);
    if (op.kind === 'start' && record.state === 'active') return messages.event({ event: 'power.on', uuid, state: 'active' }, requestId);
    return null;
  }

  /** The cast cannot be carried out and nothing changed: `action.error` with why. */
  async #refuse(op: Operation, requestId: string, state: VmState, fault: InstanceFault): Promise<void> {
    this.ctx.log.warn({ uuid: op.uuid, action: op.kind, code: fault.code }, `${op.kind} refused: ${fault.message}`);
    this.ctx.metrics.actionFailed(op.kind, fault.code);
    await this.#answer([this.#actionError(op, requestId, state, fault)]);
  }

  #actionError(op: Operation, requestId: string, state: VmState, fault: InstanceFault): OutboxMessage {
    return this.ctx.instances.messages.event({ event: 'action.error', uuid: op.uuid, state, action: op.kind as FailedAction, fault: wireFault(fault) }, requestId);
  }

  /** Writes the change with its answer; when the disk is full, the answer goes out at once (and the instance's task is left for recovery). */
  async #commitOrAnswer(record: InstanceRecord, change: Partial<InstanceRecord>, messages: OutboxMessage[]): Promise<void> {
    try {
      await this.ctx.instances.change(record, change, messages);
    } catch (err) {
      if (!isDiskFull(err)) throw err;
      this.ctx.log.error({ uuid: record.uuid }, 'the outcome of an operation could not be recorded (the disk is full); it is answered now and finished again after a restart');
      await this.#answer(messages);
    }
  }

  /** An answer that changes no record: kept in the outbox's own folder (or published at once on a full disk). */
  async #answer(messages: OutboxMessage[]): Promise<void> {
    const fresh = messages.filter((m) => !this.ctx.outbox.has(m.id));
    if (fresh.length > 0) await this.ctx.outbox.add(fresh);
  }
}
