import type { EffectiveVirtType } from './kvm-verdict.js';
import type { Fault } from './fault.js';

/**
 * Instance events on `novalet.events`, routing key
 * `instance.<uuid>.<event>`: the names and fields of the wire contract
 * (docs/messages.md).
 */

/** nova's vm_state, lower case, as the events and records carry it. */
export type VmState = 'building' | 'active' | 'stopped' | 'error' | 'deleted';

export const INSTANCE_EVENTS = ['scheduled', 'create.start', 'create.end', 'create.error', 'delete.end', 'power.on', 'power.off', 'reboot.end'] as const;

export type InstanceEventName = (typeof INSTANCE_EVENTS)[number];

interface EventBase {
  uuid: string;
  host: string;
  state: VmState;
}

export type InstanceEvent =
  | ({ event: 'scheduled'; alternates: string[] } & EventBase)
  | ({ event: 'create.start' | 'delete.end' | 'power.on' | 'power.off' | 'reboot.end' } & EventBase)
  | ({ event: 'create.end'; virt_type: EffectiveVirtType; virt_type_reason: string } & EventBase)
  | ({ event: 'create.error'; fault: Fault; will_retry: boolean } & EventBase);
