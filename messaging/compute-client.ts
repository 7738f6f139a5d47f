import { randomUUID } from 'node:crypto';
import { NovaletError } from '../config/novalet-error.js';
import type { Broker, PublishOptions } from './broker.js';
import { validateComputeRequest, type BuildBody, type ComputeRequest, type ComputeRequestKind } from './contracts/compute-requests.js';
import type { Fault } from './contracts/fault.js';
import type { VmState } from './contracts/instance-event.js';
import type { EffectiveVirtType } from './contracts/kvm-verdict.js';
import { validateReplyBody } from './contracts/reply.js';
import { isObject } from './contracts/wire.js';
import { decodeEnvelope, encodeEnvelope, makeEnvelope, REPLY_KIND } from './envelope.js';
import { computeKey, REQUEST_EXCHANGE } from './topology.js';

/**
 * A typed client of a compute host's requests (`compute.<host>`,
 * docs/messages.md "Requests to a compute host"), for the CLI's commands,
 * the schedulers and the tests. It lives in messaging/, not in
 * messaging/contracts/, because it needs the Broker, and contracts may
 * import only themselves and config/.
 *
 * Every request is checked with the host's own check (validateComputeRequest)
 * before it is sent, so what the host would dead-letter fails here, with the
 * same reason. Casts (build, delete, reboot, stop, start) are published to
 * `novalet` with key `compute.<host>`, persistent, confirmed and mandatory:
 * a host nobody serves comes back as MESSAGE_UNROUTABLE (once the broker
 * layer honours `mandatory`), never silence; they resolve with the
 * envelope id, which a redelivery keeps and events do not carry. Calls
 * (show, list, console) resolve with the reply's result; an `ok: false`
 * reply rejects with a ComputeReplyError carrying the host's code, message
 * and remedy; a reply that is not one (not an envelope of kind `reply`, a
 * body or result of another shape) rejects with RPC_REPLY_INVALID.
 */

/** An instance as a host's `show` gives it and `list` lists it (agent/instance-view.ts makes it). */
export interface ComputeInstanceView {
  uuid: string;
  name: string;
  state: VmState;
  task: string | null;
  host: string;
  virt_type: EffectiveVirtType | null;
  virt_type_reason: string | null;
  fault: { code: string; message: string; remedy?: string } | null;
  flavor: { vcpus: number; memory_mb: number; root_gb: number | null; name: string | null };
  created_at: string;
  updated_at: string;
}

/** A guest's serial console: its last lines, oldest first. */
export interface ConsoleOutput {
  uuid: string;
  lines: string[];
}

export interface ComputeClientOptions {
  /** How long a call waits for its reply; the broker's rpc_response_timeout when unset. */
  timeoutMs?: number;
}

export interface RequestOptions {
  /** The envelope id (and AMQP message_id); a fresh UUID when unset. Send a request again with its id and the host treats it as a repeat. */
  id?: string;
}

export interface CallOptions extends RequestOptions {
  /** Ends the wait for the reply (rejecting with the signal's reason). */
  signal?: AbortSignal;
}

/** A host's `ok: false` reply: its fault's code (one of config/error-codes.ts or a KVM reason on that host), message and remedy. */
export class ComputeReplyError extends Error {
  readonly code: string;
  readonly remedy: string;
  /** The fault as the host sent it. */
  readonly fault: Fault;

  constructor(
    readonly host: string,
    readonly kind: ComputeRequestKind,
    fault: Fault,
  ) {
    // As NovaletError: the message reads whole, the remedy last.
    super(fault.remedy ? `${fault.message} ${fault.remedy}` : fault.message);
    this.name = 'ComputeReplyError';
    this.code = fault.code;
    this.remedy = fault.remedy;
    this.fault = { code: fault.code, message: fault.message, remedy: fault.remedy };
  }
}

export type CastKind = 'build' | 'delete' | 'reboot' | 'stop' | 'start';

export class ComputeClient {
  constructor(
    private readonly broker: Broker,
    private readonly options: ComputeClientOptions = {},
  ) {}

  /** Builds an instance on `host` (a direct build unless `body.request` says a scheduler placed it); resolves with the envelope id once the broker confirmed. */
  build(host: string, body: BuildBody, options: RequestOptions = {}): Promise<string> {
    return this.#cast(host, 'build', body, options);
  }

  delete(host: string, uuid: string, options: RequestOptions = {}): Promise<string> {
    return this.#cast(host, 'delete', { uuid }, options);
  }

  stop(host: string, uuid: string, options: RequestOptions = {}): Promise<string> {
    return this.#cast(host, 'stop', { uuid }, options);
  }

  start(host: string, uuid: string, options: RequestOptions = {}): Promise<string> {
    return this.#cast(host, 'start', { uuid }, options);
  }

  /** SOFT: the guest is asked (ACPI), and rebooted hard if it does not comply in time; HARD: power-cycled. */
  reboot(host: string, uuid: string, type: 'SOFT' | 'HARD', options: RequestOptions = {}): Promise<string> {
    return this.#cast(host, 'reboot', { uuid, type }, options);
  }

  async show(host: string, uuid: string, options: CallOptions = {}): Promise<ComputeInstanceView> {
    const result = await this.#call(host, 'show', { uuid }, options);
    return instanceView(result, host, 'result');
  }

  /** Every instance of the host that is not deleted. */
  async list(host: string, options: CallOptions = {}): Promise<ComputeInstanceView[]> {
    const result = await this.#call(host, 'list', {}, options);
    if (!isObject(result) || !Array.isArray(result.instances)) throw invalidReply(host, 'list', 'its result is not {"instances": [...]}');
    return result.instances.map((item, i) => instanceView(item, host, `result.instances[${i}]`));
  }

  /** The last `lines` lines (the host's default, 100, when unset) of the guest's serial console. */
  async console(host: string, uuid: string, options: CallOptions & { lines?: number } = {}): Promise<ConsoleOutput> {
    const body = options.lines === undefined ? { uuid } : { uuid, lines: options.lines };
    const result = await this.#call(host, 'console', body, options);
    if (!isObject(result) || typeof result.uuid !== 'string' || !Array.isArray(result.lines) || !result.lines.every((l) => typeof l === 'string')) {
      throw invalidReply(host, 'console', 'its result is not {"uuid", "lines": [strings]}');
    }
    return { uuid: result.uuid, lines: result.lines as string[] };
  }

  /** The request's envelope, checked as the host will check it. */
  #envelope(kind: ComputeRequest['kind'], body: unknown, id: string) {
    const envelope = makeEnvelope(kind, body, id);
    const checked = validateComputeRequest(envelope);
    if (!checked.ok) {
      throw new NovaletError('INSTANCE_SPEC_INVALID', `The ${kind} request would be refused by the compute host (${checked.code}): ${checked.reason}`, 'Correct the request as the reason says (docs/messages.md lists every field and its rule).');
    }
    return envelope;
  }

  async #cast(host: string, kind: CastKind, body: unknown, options: RequestOptions): Promise<string> {
    const key = computeKey(host);
    const envelope = this.#envelope(kind, body, options.id ?? randomUUID());
    // `mandatory` is the broker layer's to honour (PublishOptions gains it); passed as a variable so that this compiles before and after.
    const publish: PublishOptions & { mandatory: boolean } = { messageId: envelope.id, mandatory: true };
    await this.broker.publish(REQUEST_EXCHANGE, key, encodeEnvelope(envelope), publish);
    return envelope.id;
  }

  async #call(host: string, kind: 'show' | 'list' | 'console', body: unknown, options: CallOptions): Promise<unknown> {
    const key = computeKey(host);
    const envelope = this.#envelope(kind, body, options.id ?? randomUUID());
    const reply = await this.broker.call(REQUEST_EXCHANGE, key, encodeEnvelope(envelope), {
      messageId: envelope.id,
      ...(this.options.timeoutMs !== undefined && { timeoutMs: this.options.timeoutMs }),
      ...(options.signal !== undefined && { signal: options.signal }),
    });
    // The broker bounded the reply's size already (max_message_size).
    const decoded = decodeEnvelope(reply.content, { maxBytes: reply.content.length });
    if (!decoded.ok) throw invalidReply(host, kind, decoded.reason);
    if (decoded.value.kind !== REPLY_KIND) throw invalidReply(host, kind, `its envelope kind is '${decoded.value.kind}', not '${REPLY_KIND}'`);
    const answer = validateReplyBody(decoded.value.body);
    if (!answer.ok) throw invalidReply(host, kind, answer.reason);
    if (!answer.value.ok) throw new ComputeReplyError(host, kind, answer.value.error);
    return answer.value.result;
  }
}

function invalidReply(host: string, kind: ComputeRequestKind, why: string): NovaletError {
  return new NovaletError(
    'RPC_REPLY_INVALID',
    `The reply of compute host '${host}' to ${kind} is not one docs/messages.md describes: ${why}.`,
    'Check that the host runs a novalet that speaks wire version 1; its log names the request by its id.',
  );
}

const VM_STATES: readonly string[] = ['building', 'active', 'stopped', 'error', 'deleted'];

/** The fields a caller relies on, checked; the rest taken as the host sent them. */
function instanceView(value: unknown, host: string, path: string): ComputeInstanceView {
  if (!isObject(value) || typeof value.uuid !== 'string' || typeof value.name !== 'string' || typeof value.state !== 'string' || !VM_STATES.includes(value.state) || !isObject(value.flavor)) {
    throw invalidReply(host, path === 'result' ? 'show' : 'list', `${path} is not an instance {"uuid", "name", "state", "flavor", …}`);
  }
  return value as unknown as ComputeInstanceView;
}
