import type { Logger } from '../config/logger.js';
import type { LibvirtConnection } from '../hypervisor/libvirt/connection.js';
import { NOVALET_DOMAIN_PREFIX } from '../hypervisor/instance/domain-xml.js';
import type { ComputeInstances } from './compute-instances.js';

/**
 * libvirt's lifecycle events turned into instance states: a guest that
 * powered itself off becomes STOPPED, one that crashed (or whose QEMU died)
 * becomes ERROR with a fault. Stops novalet asked for itself (destroy,
 * delete) are already recorded by the operation and are left alone.
 */
export function watchLifecycle(connection: LibvirtConnection, compute: ComputeInstances, log: Logger) {
  return connection.onLifecycleEvent((event) => {
    if (!event.name.startsWith(NOVALET_DOMAIN_PREFIX)) return;
    const byItself = event.event === 'stopped' && event.detail === 'shutdown';
    const crashed = event.event === 'crashed' || (event.event === 'stopped' && (event.detail === 'crashed' || event.detail === 'failed'));
    if (!byItself && !crashed) return;
    compute.guestStopped(event.uuid, crashed).then(
      (record) => {
        if (record) log.info({ uuid: event.uuid, state: record.state, event: event.event, detail: event.detail }, crashed ? 'guest crashed' : 'guest powered itself off');
      },
      (err: unknown) => log.error({ uuid: event.uuid, err }, 'could not record a lifecycle event'),
    );
  });
}
