/**
 * Hosts as the scheduler's filters see them (scheduler-filters/host-state/
 * host-view.ts), made from docs/messages.md's example of a full capability
 * report — validated, so a fixture can never be a report no host would send
 * — with the fields a test changes.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { validateCapabilityReport } from '../../messaging/contracts/capability-report-check.js';
import type { FullReport } from '../../messaging/contracts/capability-report.js';
import type { HostView } from '../../scheduler-filters/host-state/host-view.js';
import type { RequestSpec } from '../../scheduler-filters/request-spec.js';

/** The JSON examples of docs/messages.md's "Capability reports" (envelope bodies): the full report, then the heartbeat. */
export function documentedReports(): Record<string, unknown>[] {
  const doc = readFileSync(path.join(import.meta.dirname, '../../docs/messages.md'), 'utf8');
  const section = doc.slice(doc.indexOf('## Capability reports'), doc.indexOf('## Dead-lettering'));
  return [...section.matchAll(/```json\n([\s\S]*?)```/g)].map((m) => (JSON.parse(m[1] as string) as { body: Record<string, unknown> }).body);
}

function documentedFull(): Record<string, unknown> {
  const full = documentedReports()[0];
  if (!full) throw new Error("docs/messages.md has no example of a full report under 'Capability reports'");
  return full;
}

/** A full report as a host sends it, with `fields` changed; refused (thrown) when no host could send it. */
export function fullReport(fields: Partial<FullReport> = {}): FullReport {
  const checked = validateCapabilityReport({ ...documentedFull(), ...fields });
  if (!checked.ok) throw new Error(`not a report a host could send: ${checked.reason}`);
  if (checked.value.report !== 'full') throw new Error('the documented example is not a full report');
  return checked.value;
}

/** A host that is up, with its report's `fields` changed. */
export function hostView(fields: Partial<FullReport> = {}, view: Partial<Omit<HostView, 'report'>> = {}): HostView {
  const report = fullReport(fields);
  return { host: report.host, report, up: true, lastReportAt: '2026-12-08T00:00:00.000Z', ...view };
}

/** A request for a small flavor, with what a test changes. */
export function requestSpec(fields: Partial<RequestSpec> = {}, flavor: Partial<RequestSpec['flavor']> = {}): RequestSpec {
  return {
    uuid: '0b6c2f1a-8d3e-4f5a-9b7c-1d2e3f4a5b6c',
    flavor: { name: 'm1.tiny', vcpus: 1, memory_mb: 256, root_gb: 1, extra_specs: {}, ...flavor },
    imageProperties: {},
    availabilityZone: null,
    ignoreHosts: [],
    ...fields,
  };
}
