/**
 * The compute host's record of an instance, with nova's states: BUILDING →
 * ACTIVE, STOPPED, ERROR, DELETED (nova's vm_state, lower-cased as nova
 * stores it) and a task while something is under way.
 */

import type { ErrorCode } from '../config/error-codes.js';
import type { VmState } from '../messaging/contracts/instance-event.js';

export type { VmState } from '../messaging/contracts/instance-event.js';

/** nova's task_state while an operation is under way, spelt as nova spells them. */
export type TaskState = 'spawning' | 'rebooting' | 'rebooting_hard' | 'powering-off' | 'powering-on' | 'deleting' | null;

export interface InstanceFault {
  /** A code of config/error-codes.ts. */
  code: ErrorCode;
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
