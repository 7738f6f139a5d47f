/**
 * Start-up reconciliation of the instance records with the domains the
 * hypervisor has (nova's init_host): after a crash or `kill -9`, every
 * instance ends up in one state, once. A build that was under way is
 * finished (what it left is removed and it is built again from its record)
 * or, when it cannot be, failed; a running domain of a record is adopted;
 * a record whose domain is gone is an ERROR; a domain without a record is
 * reported and left alone, never destroyed.
 */
import type { Logger } from '../config/logger.js';
import type { ComputeDriver, DriverInstance } from '../hypervisor/compute-driver.js';
import type { ComputeInstances } from './compute-instances.js';
import type { InstanceRecord } from './instance-record.js';
import { isHostInstance } from './resources.js';

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

export async function recoverInstances(driver: ComputeDriver, compute: ComputeInstances, log: Logger): Promise<RecoveryResult> {
  const [records, domains] = await Promise.all([compute.list(), driver.list()]);
  const byUuid = new Map(domains.map((d) => [d.uuid, d]));
  const result: RecoveryResult = { rebuild: [], failed: [], adopted: [], lost: [], finished: [], unrecorded: [] };
  const recorded = new Set(records.map((r) => r.uuid));
  for (const domain of domains) if (!recorded.has(domain.uuid)) result.unrecorded.push(domain);

  for (const record of records) {
    const domain = byUuid.get(record.uuid);
    if (record.state === 'deleted' || record.origin?.rescheduledAt) {
      // Its delete or hand-back was recorded; a domain left by a crash in between goes.
      if (domain) await driver.destroy(record.uuid);
      continue;
    }
    if (record.state === 'building') {
      // Whatever the interrupted build made (a domain, a folder) goes; the build starts again.
      await driver.destroy(record.uuid);
      if (record.origin) {
        result.rebuild.push(record);
      } else {
        await compute.failBuild(record, {
          code: 'BUILD_INTERRUPTED',
          message: 'The build was interrupted by a restart of the compute service, and its request is not on record to build it again.',
          remedy: 'Delete the instance and build it again.',
          at: new Date().toISOString(),
        });
        result.failed.push(record.uuid);
      }
      continue;
    }
    if (record.task === 'deleting') {
      await driver.destroy(record.uuid);
      await compute.adopt(record, { state: 'deleted' });
      result.finished.push(record.uuid);
      continue;
    }
    if (!isHostInstance(record) || record.state === 'error') {
      if (record.task !== null) await compute.adopt(record, {});
      continue;
    }
    if (!domain) {
      await compute.failBuild(record, {
        code: 'DOMAIN_LOST',
        message: `The instance was ${record.state} but the hypervisor has no domain for it any more.`,
        remedy: 'Delete the instance and build it again.',
        at: new Date().toISOString(),
      });
      result.lost.push(record.uuid);
      continue;
    }
    const state = domain.state === 'running' || domain.state === 'paused' ? 'active' : 'stopped';
    if (state !== record.state || record.task !== null) {
      await compute.adopt(record, { state });
      if (record.task !== null) result.finished.push(record.uuid);
    }
    result.adopted.push(record.uuid);
  }
  if (result.unrecorded.length > 0) {
    log.warn({ domains: result.unrecorded.map((d) => d.uuid) }, 'domains of novalet that no instance record names: reported, left running');
  }
  return result;
}
