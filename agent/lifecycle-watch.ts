import type { Logger } from '../config/logger.js';
import type { ComputeDriver, LifecycleSubscription } from '../hypervisor/compute-driver.js';
import type { ComputeInstances } from './compute-instances.js';
import type { InstanceRecord } from './instance-record.js';
import type { KeyedLock } from '../service/keyed-lock.js';

/**
 * The hypervisor's lifecycle events turned into instance states: a guest
 * that powered itself off becomes STOPPED, one that crashed (or whose QEMU
 * died) becomes ERROR with a fault. Stops novalet asked for itself (stop,
 * delete) are recorded by the operation and are left alone.
 */
export function watchLifecycle(driver: ComputeDriver, compute: ComputeInstances, locks: KeyedLock, log: Logger, recorded?: (record: InstanceRecord) => void): LifecycleSubscription {
  return driver.onLifecycleEvent((event) => {
    const crashed = event.transition === 'crashed';
    if (!crashed && !(event.transition === 'stopped' && event.byGuest)) return;
    // Under the instance's lock: an operation under way records its own outcome first, and this sees it.
    locks.run(event.uuid, () => compute.guestStopped(event.uuid, crashed)).then(
      (record) => {
        if (!record) return;
        log.info({ uuid: event.uuid, state: record.state, transition: event.transition, detail: event.detail }, crashed ? 'guest crashed' : 'guest powered itself off');
        recorded?.(record);
      },
      (err: unknown) => log.error({ uuid: event.uuid, err }, 'could not record a lifecycle event'),
    );
  });
}
