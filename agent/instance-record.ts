/**
 * The compute host's record of an instance, with nova's states: BUILDING →
 * ACTIVE, STOPPED, ERROR, DELETED (nova's vm_state, lower-cased as nova
 * stores it) and a task while something is under way: `scheduling` while a
 * build waits for a slot of max_concurrent_builds (nova's task before the
 * build starts), `spawning` once it runs.
 */

import type { ErrorCode } from '../config/error-codes.js';
import type { VmState } from '../messaging/contracts/instance-event.js';
import type { OutboxMessage } from '../service/outbox.js';

export type { VmState } from '../messaging/contracts/instance-event.js';

/** nova's task_state while an operation is under way, spelt as nova spells them. */
export type TaskState = 'scheduling' | 'spawning' | 'rebooting' | 'rebooting_hard' | 'powering-off' | 'powering-on' | 'deleting' | null;

/** The request a task carries out: recovery answers it under the same ids when a crash interrupted it. */
export interface TaskRequest {
  /** The request's envelope id. */
  id: string;
  kind: 'delete' | 'stop' | 'start' | 'reboot';
  /** For a reboot: the type asked for. */
  type?: 'SOFT' | 'HARD';
}

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
  /** The build's terminal event, once sent: a redelivery of the build message gets it again. */
  answered?: 'create.end' | 'create.error';
  /** Envelope ids of other build messages for this instance that came while it was building: each gets the build's answer under its own id when it ends. */
  repeats?: string[];
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
  /** While a task runs: the request it carries out. */
  request?: TaskRequest;
  /** The last operation finished (stop, start, reboot; or its action.error) and its answer: a redelivery of that request is answered again, not done twice. */
  lastAnswer?: { requestId: string; message: OutboxMessage };
  /** Events that report this record's changes, kept until the broker confirmed them (agent/instance-store.ts). */
  outbox?: OutboxMessage[];
}
