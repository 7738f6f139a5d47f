/** libvirt's state and event numbers as names; no libvirt needed. */
import { describe, expect, it } from 'vitest';
import { domainStateName, lifecycleEventNames } from '../../hypervisor/libvirt/domain-lifecycle.js';

describe('domain states and lifecycle events', () => {
  it('name virDomainState values', () => {
    expect([0, 1, 2, 3, 4, 5, 6, 7].map(domainStateName)).toEqual([
      'nostate',
      'running',
      'blocked',
      'paused',
      'shutdown',
      'shutoff',
      'crashed',
      'pmsuspended',
    ]);
    expect(domainStateName(42)).toBe('nostate');
  });

  it('name events with their per-event details', () => {
    expect(lifecycleEventNames(0, 0)).toEqual({ event: 'defined', detail: 'added' });
    expect(lifecycleEventNames(2, 0)).toEqual({ event: 'started', detail: 'booted' });
    expect(lifecycleEventNames(5, 1)).toEqual({ event: 'stopped', detail: 'destroyed' });
    expect(lifecycleEventNames(5, 5)).toEqual({ event: 'stopped', detail: 'failed' });
    expect(lifecycleEventNames(6, 1)).toEqual({ event: 'shutdown', detail: 'guest' });
    expect(lifecycleEventNames(8, 0)).toEqual({ event: 'crashed', detail: 'panicked' });
    expect(lifecycleEventNames(3, 99)).toEqual({ event: 'suspended', detail: 'detail-99' });
    expect(lifecycleEventNames(9, 0)).toBeNull();
  });
});
