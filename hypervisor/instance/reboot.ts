/**
 * nova's reboot on a libvirt domain (nova/virt/libvirt/driver.py `reboot`,
 * `_soft_reboot`, `_hard_reboot`). SOFT: the ACPI power button, then up to
 * `[libvirt] wait_soft_reboot_seconds` for the guest to shut itself off,
 * then the domain is started again from its definition. A guest that does
 * not shut off in time, or a libvirt failure on the way, gets the HARD
 * reboot instead: destroyed and started again from its definition, which a
 * guest cannot ignore. Where nova compares domain ids to tell a guest that
 * stopped from one that is already running again, this polls whether the
 * domain is active: novalet's domains never restart by themselves
 * (on_poweroff is destroy), so an inactive domain is one that shut off.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { LibvirtDomain } from '../libvirt/domain.js';
import { isLibvirtError } from '../libvirt/error.js';
import type { RebootType } from './driver-interface.js';

/** How often the guest's state is read while it shuts down (nova reads it every second). */
export const SOFT_REBOOT_POLL_MS = 250;

/** nova's `_hard_reboot`: destroyed if it runs, then started from its definition. */
export async function hardReboot(domain: LibvirtDomain): Promise<'HARD'> {
  if (await domain.isActive()) await domain.destroy();
  await domain.create();
  return 'HARD';
}

/**
 * nova's `_soft_reboot`, falling back to `_hard_reboot`. The domain must be
 * running (the caller checks). `signal` stops the wait and rejects with its
 * reason; the guest is then left as it is (shutting down, or off).
 */
export async function softReboot(domain: LibvirtDomain, timeoutMs: number, signal?: AbortSignal): Promise<RebootType> {
  try {
    await domain.shutdown();
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      signal?.throwIfAborted();
      if (!(await domain.isActive())) {
        await domain.create();
        return 'SOFT';
      }
      const left = deadline - Date.now();
      if (left <= 0) break;
      await sleep(Math.min(SOFT_REBOOT_POLL_MS, left), undefined, signal ? { signal } : {}).catch(() => signal?.throwIfAborted());
    }
  } catch (err) {
    if (signal?.aborted) throw signal.reason;
    // nova: "Instance soft reboot failed", then the hard reboot.
    if (!isLibvirtError(err)) throw err;
  }
  signal?.throwIfAborted();
  return hardReboot(domain);
}
