/**
 * An instance as the HTTP API and the `show`/`list` replies give it: nova's
 * vm_state (lower case) and task_state, the virt type and why, the fault.
 */
import type { InstanceRecord } from './instance-record.js';

export interface InstanceView {
  uuid: string;
  name: string;
  state: InstanceRecord['state'];
  task: string | null;
  host: string;
  virt_type: 'kvm' | 'qemu' | null;
  virt_type_reason: string | null;
  fault: { code: string; message: string; remedy?: string } | null;
  flavor: { vcpus: number; memory_mb: number; root_gb: number | null; name: string | null };
  created_at: string;
  updated_at: string;
}

export function instanceView(record: InstanceRecord): InstanceView {
  return {
    uuid: record.uuid,
    name: record.name,
    state: record.state,
    task: record.task,
    host: record.host,
    virt_type: record.virtType,
    virt_type_reason: record.virtTypeReason,
    fault: record.fault ? { code: record.fault.code, message: record.fault.message, ...(record.fault.remedy ? { remedy: record.fault.remedy } : {}) } : null,
    flavor: { vcpus: record.flavor.vcpus, memory_mb: record.flavor.memoryMiB, root_gb: record.flavor.rootGb ?? null, name: record.flavor.name ?? null },
    created_at: record.createdAt,
    updated_at: record.updatedAt,
  };
}
