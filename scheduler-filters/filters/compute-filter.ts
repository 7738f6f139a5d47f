/**
 * nova's ComputeFilter (nova/scheduler/filters/compute_filter.py): a host
 * passes when its compute service is enabled and up.
 */
import type { HostFilter } from './host-filter.js';

export const computeFilter: HostFilter = {
  name: 'ComputeFilter',
  hostPasses(host) {
    const { service } = host.report;
    if (service.state === 'disabled') return `its compute service is disabled${service.disabled_reason ? ` (${service.disabled_reason})` : ''}`;
    if (!host.up) return `its compute service is down: no report since ${host.lastReportAt}, longer than [DEFAULT] service_down_time`;
    return null;
  },
};
