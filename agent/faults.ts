/**
 * Faults as the compute host records and sends them: an error as an
 * instance's fault (code, the whole sentence, the remedy), the wire form
 * of one, and the faults the host makes itself.
 */
import { NovaletError } from '../config/novalet-error.js';
import type { ServiceStatus } from '../messaging/contracts/capability-report.js';
import type { Fault } from '../messaging/contracts/fault.js';
import type { InstanceFault } from './instance-record.js';

/** An error as an instance's fault: the code, the whole sentence, the remedy when the error has one. */
export function faultOf(err: unknown): InstanceFault {
  const known = err instanceof NovaletError;
  return {
    code: known ? err.code : 'INTERNAL',
    message: err instanceof Error ? err.message : String(err),
    ...(known && err.remedy ? { remedy: err.remedy } : {}),
    at: new Date().toISOString(),
  };
}

/** The fault as it travels; an INTERNAL one without a remedy points at the log. */
export function wireFault(fault: InstanceFault | null): Fault {
  if (!fault) return { code: 'INTERNAL', message: 'The operation failed without a fault on record.', remedy: 'Look at the compute service log.' };
  return { code: fault.code, message: fault.message, remedy: fault.remedy ?? (fault.code === 'INTERNAL' ? "This is a bug of novalet: the compute service's log has the details." : '') };
}

export function notHere(uuid: string): NovaletError {
  return new NovaletError('INSTANCE_NOT_FOUND', `No instance ${uuid} is on this host.`, 'Check the UUID against the instances this host reports.');
}

export function disabledFault(service: ServiceStatus): InstanceFault {
  return {
    code: 'HOST_DISABLED',
    message: `This host does not take builds: ${service.disabled_reason ?? 'it is disabled'}.`,
    remedy: 'Build on another host, or make KVM usable here or set [libvirt] fallback_virt_type = qemu.',
    at: new Date().toISOString(),
  };
}

/** nova's words when the instance goes during its build (_do_build_and_run_instance: "Instance disappeared during build"). */
export function deletedDuringBuildFault(uuid: string): InstanceFault {
  return {
    code: 'INSTANCE_DELETED_DURING_BUILD',
    message: `Instance ${uuid} was deleted during build: the build was stopped and what it had made removed.`,
    remedy: 'Nothing to do: the delete wins over the build. Build it again if it was deleted by mistake.',
    at: new Date().toISOString(),
  };
}

/** Why an operation was aborted: the instance was deleted during it (delete wins). */
export class DeletedDuringBuild extends Error {
  constructor(readonly uuid: string) {
    super(`instance ${uuid} was deleted during its build`);
  }
}
