/**
 * Builds on a compute host, as nova's `build_and_run_instance`:
 *
 * 1. taken on: the request checked, resources claimed (nova's claim, one at a
 *    time so each sees the claims before it), and the instance recorded
 *    BUILDING (task `scheduling`) — then the request is acknowledged, so a
 *    queue of builds never holds calls up in the broker;
 * 2. run when a slot of `max_concurrent_builds` is free: `create.start`, the
 *    driver's spawn, then `create.end` or `create.error` (and, for a placed
 *    build, a `reschedule` to the schedulers with this host's fault);
 * 3. a delete of the instance wins at once: the build's signal aborts the
 *    wait, the download and the spawn, and the build ends with `create.error`
 *    (INSTANCE_DELETED_DURING_BUILD) before the delete's `delete.end`.
 *
 * Every event is written with the state it reports (ComputeInstances.change)
 * and published by the outbox. A build redelivered after its effect is done
 * is answered again with its terminal event, under the same id.
 */
import type { NovaletConfig } from '../config/novalet-config.js';
import type { Logger } from '../config/logger.js';
import { isDiskFull } from '../config/disk-full.js';
import { validateInstanceSpec, type ValidInstanceSpec } from '../hypervisor/compute-driver.js';
import type { ServiceStatus } from '../messaging/contracts/capability-report.js';
import { rescheduleBody, type BuildBody } from '../messaging/contracts/compute-requests.js';
import type { KeyedLock } from '../service/keyed-lock.js';
import type { Outbox, OutboxMessage } from '../service/outbox.js';
import type { Slots } from '../service/slots.js';
import { instanceSpecOf } from './build-spec.js';
import type { ComputeInstances } from './compute-instances.js';
import { DeletedDuringBuild, deletedDuringBuildFault, disabledFault, faultOf, wireFault } from './faults.js';
import type { BuildOrigin, InstanceFault, InstanceRecord } from './instance-record.js';
import type { ServiceMetrics } from './metrics.js';
import { claimRefusal, resourceView, type HostInventory } from './resources.js';

export interface BuildsContext {
  config: () => NovaletConfig;
  instances: ComputeInstances;
  outbox: Outbox;
  /** Runs a queued build as tracked work of the service (its signal aborts when the service stops: ConsumerRunner.track). */
  track: (work: (stopping: AbortSignal) => Promise<void>) => Promise<void>;
  locks: KeyedLock;
  slots: Slots;
  log: Logger;
  metrics: ServiceMetrics;
  service: () => ServiceStatus;
  inventory: () => Promise<HostInventory>;
  /** Something a capability report shows changed. */
  changed: () => void;
}

function willRetry(body: BuildBody): boolean {
  return body.request !== undefined && body.request.attempt < body.request.max_attempts;
}

export class Builds {
  /** Builds taken on and not ended, by instance: their abort, for a delete that wins. */
  readonly #underway = new Map<string, AbortController>();
  /** When each of them ends (tests and benchmarks wait on it). */
  readonly #ends = new Map<string, Promise<void>>();
  readonly #claims: KeyedLock;
  /** The last build that failed for a full disk (an image, an overlay), until a build succeeds. */
  diskFull: { at: string; message: string } | null = null;

  constructor(
    private readonly ctx: BuildsContext,
    claims: KeyedLock,
  ) {
    this.#claims = claims;
  }

  /** Builds taken on and not ended. */
  get underway(): number {
    return this.#underway.size;
  }

  isUnderway(uuid: string): boolean {
    return this.#underway.has(uuid);
  }

  /** Resolves once the instance's build under way (if any) has ended, whichever way. */
  async ended(uuid: string): Promise<void> {
    await this.#ends.get(uuid);
  }

  /** A delete wins over the instance's build: true when there was one, now aborting. */
  abortFor(uuid: string): boolean {
    const build = this.#underway.get(uuid);
    if (!build) return false;
    build.abort(new DeletedDuringBuild(uuid));
    return true;
  }

  /**
   * The request `build` with envelope id `messageId`: resolves once it is
   * answered or taken on (recorded BUILDING, its build queued), so that its
   * delivery can be acknowledged. `receivedAt` (performance.now()) is for the
   * 'instance built' log line.
   */
  async take(body: BuildBody, messageId: string, receivedAt: number): Promise<void> {
    const { instances, locks } = this.ctx;
    const config = this.ctx.config();
    const uuid = body.instance.uuid;
    await locks.run(uuid, async () => {
      const known = instances.get(uuid);
      const same = known?.origin?.messageId === messageId;
      // A new build of a deleted instance's UUID, or of one a scheduler placed here again, is built; anything else on record is a repeat.
      if (known && (same || (known.state !== 'deleted' && !known.origin?.rescheduledAt))) {
        await this.#answerRepeat(known, body, messageId);
        return;
      }
      this.ctx.metrics.buildReceived();
      const origin: BuildOrigin = { messageId, body, rescheduledAt: null };
      let valid: ValidInstanceSpec;
      try {
        valid = validateInstanceSpec(await instanceSpecOf(body, config.compute.image_dir));
      } catch (err) {
        await this.#refuse(body, faultOf(err), origin);
        return;
      }
      const flavor = { rootGb: body.instance.flavor.root_gb, name: body.instance.flavor.name };
      type Claimed = { record: InstanceRecord } | { fault: InstanceFault };
      const claimed = await this.#claims.run('claims', async (): Promise<Claimed> => {
        const service = this.ctx.service();
        const view = resourceView(await this.ctx.inventory(), instances.list(), config.DEFAULT);
        const refusal = service.state === 'disabled' ? disabledFault(service) : claimRefusal(view, { vcpus: valid.vcpus, memoryMb: valid.memoryMiB, rootGb: flavor.rootGb });
        if (refusal) return { fault: refusal };
        try {
          return { record: await instances.accept(valid, flavor, origin) };
        } catch (err) {
          return { fault: faultOf(err) };
        }
      });
      if ('fault' in claimed) {
        await this.#refuse(body, claimed.fault, origin);
        return;
      }
      this.ctx.changed();
      this.#queue(claimed.record, valid, body, receivedAt);
    });
  }

  /** A build a restart interrupted (recovery): queued again from its record. */
  resume(record: InstanceRecord): void {
    const body = record.origin!.body as BuildBody;
    let valid: ValidInstanceSpec;
    void (async () => {
      try {
        valid = validateInstanceSpec(await instanceSpecOf(body, this.ctx.config().compute.image_dir));
      } catch (err) {
        await this.ctx.locks.run(record.uuid, () => this.#failed(record, body, faultOf(err)));
        return;
      }
      this.ctx.log.info({ uuid: record.uuid }, 'building again an instance whose build a restart interrupted');
      this.#queue(record, valid, body, null);
    })().catch((err: unknown) => this.ctx.log.error({ err, uuid: record.uuid }, 'an interrupted build could not be resumed'));
  }

  #queue(record: InstanceRecord, valid: ValidInstanceSpec, body: BuildBody, receivedAt: number | null): void {
    const abort = new AbortController();
    this.#underway.set(record.uuid, abort);
    // Tracked by the runner: a stop aborts it with HandedBack and its record stays BUILDING for the next start.
    const end = this.ctx.track(async (stopping) => {
      const onStop = (): void => abort.abort(stopping.reason);
      stopping.addEventListener('abort', onStop, { once: true });
      try {
        await this.ctx.locks.run(record.uuid, () => this.#run(record, valid, body, abort.signal, receivedAt));
      } finally {
        stopping.removeEventListener('abort', onStop);
        if (this.#underway.get(record.uuid) === abort) this.#underway.delete(record.uuid);
      }
    });
    this.#ends.set(record.uuid, end);
    void end.then(() => {
      if (this.#ends.get(record.uuid) === end) this.#ends.delete(record.uuid);
    });
  }

  async #run(taken: InstanceRecord, valid: ValidInstanceSpec, body: BuildBody, signal: AbortSignal, receivedAt: number | null): Promise<void> {
    const { instances, metrics, log } = this.ctx;
    const messageId = taken.origin!.messageId;
    const uuid = taken.uuid;
    let record = instances.get(uuid) ?? taken;
    const started = performance.now();
    if (record.state !== 'building' || record.origin?.messageId !== messageId) {
      // A delete took the instance's lock between the build's take and its start (abortFor found nothing to abort yet): the delete won.
      metrics.buildFailed(0, 'INSTANCE_DELETED_DURING_BUILD');
      log.info({ uuid, state: record.state }, 'the build did not start: its instance was deleted before it began');
      await this.#endDeleted(record, messageId, uuid);
      return;
    }
    try {
      await this.ctx.slots.run(async () => {
        record = await instances.change(record, { task: 'spawning' }, [instances.messages.event({ event: 'create.start', uuid, state: 'building' }, messageId)]);
        this.ctx.changed();
        const launched = await instances.driver.spawn(valid, { signal });
        const image = launched.image ? { source: valid.image?.source ?? '', sha256: launched.image.sha256 } : record.image;
        const endBody = { event: 'create.end', uuid, state: 'active', virt_type: launched.virtType, virt_type_reason: launched.virtTypeReason } as const;
        // Re-read: a repeat may have been recorded (origin.repeats) while the guest was being made.
        const current = instances.get(uuid) ?? record;
        const ends = [messageId, ...repeatsOf(current)].map((id) => instances.messages.event(endBody, id));
        record = await instances.change(current, { state: 'active', task: null, virtType: launched.virtType, virtTypeReason: launched.virtTypeReason, image, origin: { ...current.origin!, answered: 'create.end' } }, ends);
      }, signal);
    } catch (err) {
      if (signal.aborted && !(signal.reason instanceof DeletedDuringBuild)) throw signal.reason;
      const seconds = (performance.now() - started) / 1000;
      if (signal.aborted) {
        // The delete that aborted it finishes the instance; the build's last word says why it ended.
        metrics.buildFailed(seconds, 'INSTANCE_DELETED_DURING_BUILD');
        log.info({ uuid }, 'the build was stopped: its instance was deleted during it');
        await this.#endDeleted(instances.get(uuid) ?? record, messageId, uuid);
        return;
      }
      metrics.buildFailed(seconds, faultOf(err).code);
      await this.#failed(record, body, faultOf(err));
      return;
    }
    const seconds = (performance.now() - started) / 1000;
    this.diskFull = null;
    metrics.buildSucceeded(seconds, record.virtType ?? 'qemu');
    const received = receivedAt === null ? {} : { received_to_running_ms: Math.round(performance.now() - receivedAt) };
    log.info({ uuid, virt_type: record.virtType, seconds: Number(seconds.toFixed(3)), ...received }, 'instance built');
    this.ctx.changed();
  }

  /** A build that failed here: ERROR with the fault and `create.error`; a placed one goes back to the schedulers with it. */
  async #failed(taken: InstanceRecord, body: BuildBody, fault: InstanceFault): Promise<void> {
    const { instances, log } = this.ctx;
    const record = instances.get(taken.uuid) ?? taken;
    const messageId = record.origin!.messageId;
    const placed = body.request !== undefined;
    log.warn({ uuid: record.uuid, code: fault.code, placed }, `build failed: ${fault.message}`);
    if (fault.code === 'DISK_FULL') this.diskFull = { at: fault.at, message: fault.message };
    // Other build messages that came during the build get its create.error under their own ids (one reschedule only).
    const messages = this.#failureMessages(body, fault, messageId, repeatsOf(record));
    const origin = { ...record.origin!, answered: 'create.error' as const, ...(placed ? { rescheduledAt: new Date().toISOString() } : {}) };
    try {
      await instances.change(record, { state: 'error', task: null, fault, origin }, messages);
    } catch (err) {
      if (!isDiskFull(err)) throw err;
      // Nothing more can be written here: the guest goes, its stale BUILDING file too (so a restart does not build it again),
      // and the answer is published at once, confirmed before anything else happens.
      await instances.driver.destroy(record.uuid).catch(() => undefined);
      await instances.store.dropFile({ ...record, state: 'error', task: null, fault, origin });
      await this.ctx.outbox.add(messages);
    }
    this.ctx.changed();
  }

  /**
   * The build's last word when a delete won: create.error INSTANCE_DELETED_DURING_BUILD for its message and the repeats.
   * A record still BUILDING becomes ERROR, so that a restart before the delete finishes does not build it again (the
   * delete, redelivered, finishes it); one the delete finished already stays deleted.
   */
  async #endDeleted(current: InstanceRecord, messageId: string, uuid: string): Promise<void> {
    const fault = deletedDuringBuildFault(uuid);
    const answers = [messageId, ...repeatsOf(current)].map((id) => this.#deletedDuringBuild(uuid, fault, id));
    const ended = current.state === 'building' ? { state: 'error' as const, task: null } : {};
    try {
      // The record is another build's by now (a new build of the UUID after the delete): only the answer is this build's.
      if (current.origin?.messageId !== messageId) return await this.ctx.outbox.add(answers);
      await this.ctx.instances.change(current, { ...ended, fault, origin: { ...current.origin!, answered: 'create.error' } }, answers);
    } catch (err) {
      if (!isDiskFull(err)) throw err;
      // Nothing can be written: the answer is published at once.
      await this.ctx.outbox.add(answers);
    }
    this.ctx.changed();
  }

  #deletedDuringBuild(uuid: string, fault: InstanceFault, messageId: string): OutboxMessage {
    return this.ctx.instances.messages.event({ event: 'create.error', uuid, state: 'error', fault: wireFault(fault), will_retry: false }, messageId);
  }

  #failureMessages(body: BuildBody, fault: InstanceFault, messageId: string, repeats: readonly string[] = []): OutboxMessage[] {
    const { messages, host } = this.ctx.instances;
    const wire = wireFault(fault);
    const retry = willRetry(body);
    const out = [messageId, ...repeats].map((id) => messages.event({ event: 'create.error', uuid: body.instance.uuid, state: retry ? 'building' : 'error', fault: wire, will_retry: retry }, id));
    if (body.request !== undefined) out.push(messages.reschedule(rescheduleBody(body, { host, ...wire }), messageId));
    return out;
  }

  /** Refused before anything was touched: recorded ERROR (a placed build handed back at once) with its answer; on a full disk, answered at once. */
  async #refuse(body: BuildBody, fault: InstanceFault, origin: BuildOrigin): Promise<void> {
    const { instance } = body;
    const placed = body.request !== undefined;
    this.ctx.log.warn({ uuid: instance.uuid, code: fault.code, placed }, `build refused: ${fault.message}`);
    this.ctx.metrics.buildFailed(0, fault.code);
    const refused = { uuid: instance.uuid, name: instance.name, vcpus: instance.flavor.vcpus, memoryMiB: instance.flavor.memory_mb, rootGb: instance.flavor.root_gb, flavorName: instance.flavor.name };
    const messages = this.#failureMessages(body, fault, origin.messageId);
    const answered = { ...origin, answered: 'create.error' as const, ...(placed ? { rescheduledAt: new Date().toISOString() } : {}) };
    try {
      await this.ctx.instances.refused(refused, fault, answered, messages);
    } catch (err) {
      if (!isDiskFull(err)) throw err;
      await this.ctx.outbox.add(messages);
    }
  }

  /** A build for an instance this host has on record: nothing is built; the build's answer is given again. */
  async #answerRepeat(known: InstanceRecord, body: BuildBody, messageId: string): Promise<void> {
    const { instances, log, outbox } = this.ctx;
    const uuid = known.uuid;
    const same = known.origin?.messageId === messageId;
    log.info({ uuid, message_id: messageId, state: known.state, same_message: same }, 'a repeated build: the instance is on record already; nothing is built, its answer is sent again');
    let answer: OutboxMessage[] = [];
    // Another message for an instance already built (active or stopped since) gets the build's outcome under its own id.
    const outcome = same ? known.origin?.answered : (known.origin?.answered ?? (known.state === 'active' || known.state === 'stopped' ? 'create.end' : known.state === 'error' ? 'create.error' : undefined));
    if (outcome === 'create.end' && known.virtType) {
      // The same event as first sent (same id, same body), whatever became of the instance since.
      answer = [instances.messages.event({ event: 'create.end', uuid, state: 'active', virt_type: known.virtType, virt_type_reason: known.virtTypeReason ?? '' }, messageId)];
    } else if (outcome === 'create.error' && known.fault?.code === 'INSTANCE_DELETED_DURING_BUILD') {
      // Deleted during its build: that was its last word (never a reschedule).
      answer = [this.#deletedDuringBuild(uuid, known.fault, messageId)];
    } else if (outcome === 'create.error') {
      const original = (same ? (known.origin?.body as BuildBody | undefined) : undefined) ?? body;
      answer = same ? this.#failureMessages(original, known.fault ?? faultOf(new Error('the build failed')), messageId) : [instances.messages.event({ event: 'create.error', uuid, state: 'error', fault: wireFault(known.fault), will_retry: false }, messageId)];
    }
    if (!same && outcome === undefined && known.state === 'building' && known.origin && !known.origin.repeats?.includes(messageId)) {
      // Building under another message: this one is answered with the build's outcome when it ends (kept on the record, so a crash does not lose it).
      await instances.change(known, { origin: { ...known.origin, repeats: [...(known.origin.repeats ?? []), messageId] } });
      return;
    }
    // Still pending in the outbox, or building (its own answer will come): nothing more to send.
    const fresh = answer.filter((m) => !outbox.has(m.id));
    if (fresh.length > 0) await outbox.add(fresh);
  }
}

/** The other build messages waiting for this instance's build to end (BuildOrigin.repeats). */
function repeatsOf(record: InstanceRecord): string[] {
  return record.origin?.repeats ?? [];
}
