/**
 * What a filter or weigher sees of one host: nova's HostState, made from the
 * host's last good full capability report with what later heartbeats and
 * placements still in flight changed (host-state/ builds it). Filters read
 * it and never change it.
 */
import type { FullReport } from '../../messaging/contracts/capability-report.js';

export interface HostView {
  /** The host's name (`DEFAULT.host` on the compute side). */
  host: string;
  /** The last full report, usage (vcpus_used, memory_mb_used, local_gb_used, running_vms) as of the last heartbeat plus placements in flight. */
  report: FullReport;
  /** Whether the host reported within `[DEFAULT] service_down_time` (nova's servicegroup is_up). */
  up: boolean;
  /** When its last report (full or heartbeat) came, ISO 8601. */
  lastReportAt: string;
}
