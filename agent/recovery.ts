/**
 * Start-up reconciliation of the instance records with the domains the
 * hypervisor has (nova's init_host): after a crash or `kill -9`, every
 * instance ends up in one state, once, and whatever recovery finishes is
 * published as the operation would have published it — under the ids of the
 * request it answers, so that a consumer that saw the event before the crash
 * drops the repeat.
 *
 * - a build under way (BUILDING): what it made goes, and it is built again
 *   from its record (agent/builds.ts); one without its request on record
 *   ends ERROR (BUILD_INTERRUPTED) with `create.error`;
 * - a delete under way is finished: `delete.end`;
 * - a stop, start or reboot under way is finished by the domain's state:
 *   `power.off`, `power.on`, `reboot.end`;
 * - a running or stopped domain of a record is adopted, its state taken
 *   from libvirt (with `power.on`/`power.off` when it changed meanwhile); a
 *   record whose domain is gone is ERROR (DOMAIN_LOST) with `power.off`;
 * - a domain without a record is reported and left alone, never destroyed.
 */
import type { Logger } from '../config/logger.js';
import type { ComputeDriver, DriverInstance } from '../hypervisor/compute-driver.js';
import type { Fault } from '../messaging/contracts/fault.js';
import type { OutboxMessage } from '../service/outbox.js';
import type { ComputeInstances } from './compute-instances.js';
import { faultOf, wireFault } from './faults.js';
import type { InstanceFault, InstanceRecord } from './instance-record.js';
import { isGone } from './instance-store.js';

export interface RecoveryResult {
  /** Interrupted builds to be built again from their records. */
  rebuild: InstanceRecord[];
  /** Interrupted builds that could not be finished (no build body on record). */
  failed: string[];
  /** Records whose running or stopped domain was found and kept. */
  adopted: string[];
  /** Records whose domain has gone. */
  lost: string[];
  /** Operations (delete, stop, …) that were under way and are now finished. */
  finished: string[];
  /** Domains of this host that no record names: reported, not destroyed. */
  unrecorded: DriverInstance[];
}

const running = (domain: DriverInstance | undefined): boolean => domain?.state === 'running' || domain?.state === 'paused';

function fault(code: InstanceFault['code'], message: string, remedy: string): InstanceFault {
  return { code, message, remedy, at: new Date().toISOString() };
}

export async function recoverInstances(driver: ComputeDriver, instances: ComputeInstances, log: Logger): Promise<RecoveryResult> {
  const records = instances.list();
  const domains = await driver.list();
  const byUuid = new Map(domains.map((d) => [d.uuid, d]));
  const result: RecoveryResult = { rebuild: [], failed: [], adopted: [], lost: [], finished: [], unrecorded: [] };
  const recorded = new Set(records.map((r) => r.uuid));
  for (const domain of domains) if (!recorded.has(domain.uuid)) result.unrecorded.push(domain);
  for (const record of records) {
    try {
      await recoverOne(record, byUuid.get(record.uuid), driver, instances, log, result);
    } catch (err) {
      // One instance libvirt cannot settle never stops the service: it is ERROR with why, and answered.
      const f = faultOf(err);
      log.error({ uuid: record.uuid, code: f.code }, `recovery could not settle this instance: ${f.message}`);
      const { request: _request, ...rest } = record;
      const out: OutboxMessage[] = record.request ? [instances.messages.event({ event: 'action.error', uuid: record.uuid, state: 'error', action: record.request.kind, fault: wireFault(f) }, record.request.id)] : [];
      try {
        await instances.change(rest, { state: 'error', task: null, fault: f }, out);
      } catch (writeErr) {
        // Not even that could be written (a full disk): the record stays as it was; its request, unacknowledged, comes again and is answered then.
        log.error({ uuid: record.uuid, code: faultOf(writeErr).code }, `recovery could not record this instance's fault either: ${faultOf(writeErr).message}`);
      }
      result.lost.push(record.uuid);
    }
  }
  if (result.unrecorded.length > 0) {
    log.warn({ domains: result.unrecorded.map((d) => d.uuid) }, 'domains of novalet that no instance record names: reported, left running');
  }
  return result;
}

/** One record against its domain: see the file's comment for the outcomes. */
async function recoverOne(record: InstanceRecord, domain: DriverInstance | undefined, driver: ComputeDriver, instances: ComputeInstances, log: Logger, result: RecoveryResult): Promise<void> {
  const { messages } = instances;
  const { uuid } = record;
  const requestId = record.request?.id;
  const { request: _request, ...rest } = record;
  if (isGone(record)) {
    // Its delete or hand-back was recorded; a domain left by a crash in between goes.
    if (domain) await driver.destroy(uuid);
    return;
  }
  if (record.task === 'deleting') {
    await driver.destroy(uuid);
    await instances.change(rest, { state: 'deleted', task: null }, [messages.event({ event: 'delete.end', uuid, state: 'deleted' }, requestId)]);
    result.finished.push(uuid);
    return;
  }
  if (record.state === 'building') {
    // Whatever the interrupted build made (a domain, a folder) goes; the build starts again.
    await driver.destroy(uuid);
    if (record.origin?.answered) {
      // Its build had ended already (a delete won, and the kill came before the delete finished): ERROR with that fault, never built again; the delete, redelivered, finishes it.
      await instances.change(rest, { state: 'error', task: null });
      result.failed.push(uuid);
      return;
    }
    if (record.origin) {
      result.rebuild.push(record);
      return;
    }
    const f = fault('BUILD_INTERRUPTED', 'The build was interrupted by a restart of the compute service, and its request is not on record to build it again.', 'Delete the instance and build it again.');
    await instances.change(rest, { state: 'error', task: null, fault: f }, [messages.event({ event: 'create.error', uuid, state: 'error', fault: wireFault(f), will_retry: false })]);
    result.failed.push(uuid);
    return;
  }
  if (record.state === 'error' && record.task === null) return;
  if (!domain) {
    const f = fault('DOMAIN_LOST', `The instance was ${record.state} but the hypervisor has no domain for it any more.`, 'Delete the instance and build it again.');
    const out: OutboxMessage[] = [messages.event({ event: 'power.off', uuid, state: 'error', fault: wireFault(f) })];
    if (requestId && record.request) out.push(messages.event({ event: 'action.error', uuid, state: 'error', action: record.request.kind, fault: wireFault(f) }, requestId));
    await instances.change(rest, { state: 'error', task: null, fault: f }, out);
    result.lost.push(uuid);
    return;
  }
  if (record.task !== null && record.request) {
    await finishTask(driver, instances, rest, record, domain, log);
    result.finished.push(uuid);
    result.adopted.push(uuid);
    return;
  }
  const state = running(domain) ? 'active' : 'stopped';
  if (state !== record.state || record.task !== null) {
    const changed: OutboxMessage[] = state === record.state ? [] : [messages.event(state === 'active' ? { event: 'power.on', uuid, state } : { event: 'power.off', uuid, state })];
    await instances.change(rest, { state, task: null }, changed);
    if (record.task !== null) result.finished.push(uuid);
  }
  result.adopted.push(uuid);
}

/** A stop, start or reboot a crash interrupted, finished as it was asked, and answered under its request's ids. */
async function finishTask(driver: ComputeDriver, instances: ComputeInstances, rest: InstanceRecord, record: InstanceRecord, domain: DriverInstance, log: Logger): Promise<void> {
  const { uuid } = record;
  const request = record.request!;
  const { messages } = instances;
  // Kept on the record too, so that the request, redelivered, is answered again rather than done twice.
  const answered = (change: Partial<InstanceRecord>, message: OutboxMessage) => instances.change(rest, { ...change, lastAnswer: { requestId: request.id, message } }, [message]);
  try {
    switch (request.kind) {
      case 'stop':
        // The guest had its chance before the crash: the plug is pulled now.
        if (running(domain)) await driver.powerOff(uuid, 0);
        await answered({ state: 'stopped', task: null }, messages.event({ event: 'power.off', uuid, state: 'stopped' }, request.id));
        return;
      case 'start':
        if (!running(domain)) await driver.powerOn(uuid);
        await answered({ state: 'active', task: null, fault: null }, messages.event({ event: 'power.on', uuid, state: 'active' }, request.id));
        return;
      case 'reboot': {
        const asked = request.type ?? 'SOFT';
        // A guest the crash left off is started (a hard reboot's second half); a running one has rebooted.
        const how = running(domain) ? asked : 'HARD';
        if (!running(domain)) await driver.powerOn(uuid);
        await answered({ state: 'active', task: null, fault: null }, messages.event({ event: 'reboot.end', uuid, state: 'active', type: how, requested_type: asked }, request.id));
        return;
      }
      default:
        break;
    }
  } catch (err) {
    const f = faultOf(err);
    log.warn({ uuid, action: request.kind, code: f.code }, `a ${request.kind} a restart interrupted could not be finished: ${f.message}`);
    const wire: Fault = wireFault(f);
    await answered({ state: 'error', task: null, fault: f }, messages.event({ event: 'action.error', uuid, state: 'error', action: request.kind as 'stop', fault: wire }, request.id));
  }
}
