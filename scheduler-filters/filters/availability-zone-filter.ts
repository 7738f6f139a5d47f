/**
 * nova's AvailabilityZoneFilter
 * (nova/scheduler/filters/availability_zone_filter.py): a request for a
 * zone passes only hosts in it; a request for none passes every host. The
 * host's zone is the one its report says (novalet's compute hosts name
 * their own: [compute] availability_zone, else [DEFAULT]
 * default_availability_zone), where nova reads its aggregates.
 */
import type { HostFilter } from './host-filter.js';

export function availabilityZoneFilter(defaultZone: string): HostFilter {
  return {
    name: 'AvailabilityZoneFilter',
    hostPasses(host, spec) {
      if (!spec.availabilityZone) return null;
      const zone = host.report.availability_zone ?? defaultZone;
      return zone === spec.availabilityZone ? null : `it is in availability zone '${zone}', not '${spec.availabilityZone}'`;
    },
  };
}
