import type { EffectiveVirtType } from './kvm-verdict.js';
import type { Fault } from './fault.js';

/**
 * Instance events on `novalet.events`, routing key
 * `instance.<uuid>.<event>`: the names and fields of the wire contract
 * (docs/messages.md).
 */

/** nova's vm_state, lower case, as the events and records carry it. */
export type VmState = 'building' | 'active' | 'stopped' | 'error' | 'deleted';

export const INSTANCE_EVENTS = ['scheduled', 'create.start', 'create.end', 'create.error', 'delete.end', 'power.on', 'power.off', 'reboot.end', 'action.error'] as const;

/** The casts whose failure `action.error` reports. */
export const FAILED_ACTIONS = ['delete', 'stop', 'start', 'reboot'] as const;
export type FailedAction = (typeof FAILED_ACTIONS)[number];

export type InstanceEventName = (typeof INSTANCE_EVENTS)[number];

interface EventBase {
  uuid: string;
  host: string;
  state: VmState;
}

export type InstanceEvent =
  | ({ event: 'scheduled'; alternates: string[] } & EventBase)
  | ({ event: 'create.start' | 'delete.end' | 'power.on' } & EventBase)
  /** `fault` when the guest crashed or its QEMU died (then `state` is `error`). */
  | ({ event: 'power.off'; fault?: Fault } & EventBase)
  /** `type`: how the guest was rebooted; a SOFT reboot the guest ignored for wait_soft_reboot_seconds ends HARD. */
  | ({ event: 'reboot.end'; type: 'SOFT' | 'HARD'; requested_type: 'SOFT' | 'HARD' } & EventBase)
  /** A cast that could not be carried out: the instance stays as it was, or is ERROR with this fault. */
  | ({ event: 'action.error'; action: FailedAction; fault: Fault } & EventBase)
  | ({ event: 'create.end'; virt_type: EffectiveVirtType; virt_type_reason: string } & EventBase)
  | ({ event: 'create.error'; fault: Fault; will_retry: boolean } & EventBase);
