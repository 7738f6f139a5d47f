/**
 * libvirt's domain states (virDomainState) and lifecycle events
 * (virDomainEventType with its per-event detail enums) as names.
 */

export const DOMAIN_STATES = ['nostate', 'running', 'blocked', 'paused', 'shutdown', 'shutoff', 'crashed', 'pmsuspended'] as const;
export type DomainStateName = (typeof DOMAIN_STATES)[number];

export function domainStateName(state: number): DomainStateName {
  return DOMAIN_STATES[state] ?? 'nostate';
}

export const LIFECYCLE_EVENTS = [
  'defined',
  'undefined',
  'started',
  'suspended',
  'resumed',
  'stopped',
  'shutdown',
  'pmsuspended',
  'crashed',
] as const;
export type LifecycleEventName = (typeof LIFECYCLE_EVENTS)[number];

/** Detail names per event, indexed by libvirt's detail number (virDomainEventDefinedDetailType, …). */
const DETAILS: Record<LifecycleEventName, readonly string[]> = {
  defined: ['added', 'updated', 'renamed', 'from_snapshot'],
  undefined: ['removed', 'renamed'],
  started: ['booted', 'migrated', 'restored', 'from_snapshot', 'wakeup'],
  suspended: [
    'paused',
    'migrated',
    'ioerror',
    'watchdog',
    'restored',
    'from_snapshot',
    'api_error',
    'postcopy',
    'postcopy_failed',
  ],
  resumed: ['unpaused', 'migrated', 'from_snapshot', 'postcopy', 'postcopy_failed'],
  stopped: ['shutdown', 'destroyed', 'crashed', 'migrated', 'saved', 'failed', 'from_snapshot'],
  shutdown: ['finished', 'guest', 'host'],
  pmsuspended: ['memory', 'disk'],
  crashed: ['panicked', 'crashloaded'],
};

export interface LifecycleEvent {
  uuid: string;
  name: string;
  event: LifecycleEventName;
  /** libvirt's detail as a lower-case name ('booted', 'destroyed', …), or `detail-<n>` for one newer than this table. */
  detail: string;
}

/** libvirt's event and detail numbers as names; null for an event number newer than this table. */
export function lifecycleEventNames(event: number, detail: number): { event: LifecycleEventName; detail: string } | null {
  const name = LIFECYCLE_EVENTS[event];
  if (name === undefined) return null;
  return { event: name, detail: DETAILS[name][detail] ?? `detail-${detail}` };
}
