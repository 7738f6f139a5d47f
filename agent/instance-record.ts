/**
 * The compute host's record of an instance, with nova's states: BUILDING →
 * ACTIVE, STOPPED, ERROR, DELETED (nova's vm_state, lower-cased as nova
 * stores it) and a task while something is under way.
 */

export type VmState = 'building' | 'active' | 'stopped' | 'error' | 'deleted';

export type TaskState = 'spawning' | 'rebooting' | 'powering-off' | 'powering-on' | 'deleting' | null;

export interface InstanceFault {
  code: string;
  /** The whole fault as an operator reads it: cause, diagnosis, remedy. */
  message: string;
  at: string;
}

export interface InstanceRecord {
  uuid: string;
  name: string;
  host: string;
  state: VmState;
  task: TaskState;
  flavor: { vcpus: number; memoryMiB: number };
  image: { source: string; sha256: string | null } | null;
  kernel: string | null;
  /** The virt type the instance runs with, once decided. */
  virtType: 'kvm' | 'qemu' | null;
  /** Why that virt type: the decision's sentence. */
  virtTypeReason: string | null;
  fault: InstanceFault | null;
  createdAt: string;
  updatedAt: string;
}
