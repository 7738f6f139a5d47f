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
  /** What to do about it, when known apart from the message. */
  remedy?: string;
  at: string;
}

/** How the instance came to this host over the bus: what recovery and idempotence need. */
export interface BuildOrigin {
  /** The envelope id of the build message (a redelivery carries the same). */
  messageId: string;
  /** The build body as received (wire form), so that an interrupted build can be finished after a restart. */
  body: unknown;
  /** Set once the build went back to the schedulers: the instance is not this host's any more. */
  rescheduledAt: string | null;
}

export interface InstanceRecord {
  uuid: string;
  name: string;
  host: string;
  state: VmState;
  task: TaskState;
  flavor: { vcpus: number; memoryMiB: number; rootGb?: number; name?: string };
  image: { source: string; sha256: string | null } | null;
  kernel: string | null;
  /** The virt type the instance runs with, once decided. */
  virtType: 'kvm' | 'qemu' | null;
  /** Why that virt type: the decision's sentence. */
  virtTypeReason: string | null;
  fault: InstanceFault | null;
  createdAt: string;
  updatedAt: string;
  /** Present for instances built on request from the bus. */
  origin?: BuildOrigin;
}
