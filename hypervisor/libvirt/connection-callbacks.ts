/**
 * The C callbacks libvirt calls on a connection's behalf: domain lifecycle
 * events and the connection's close notice.
 *
 * Each is one koffi-registered JS function for the whole process, never
 * unregistered, so libvirt can never call a freed trampoline, however late a
 * dispatch arrives. libvirt's `opaque` argument carries a connection id that
 * selects the receiver; an id no longer registered is ignored.
 *
 * libvirt calls them from its event loop thread (a libuv pool thread, see
 * event-loop.ts); koffi relays each call to the main thread and holds the loop
 * thread until the function returns. So they only copy what they need out of
 * libvirt's objects (which are valid during the call only) and hand the rest
 * to listeners on a later turn of Node's loop (setImmediate): a slow or
 * throwing listener never holds libvirt's loop.
 */
import type { IKoffiRegisteredCallback } from 'koffi';
import { koffi } from './koffi.js';
import type { NativeAddress } from './call-pool.js';
import { CLOSE_REASONS, type CloseReason } from './constants.js';
import { lifecycleEventNames, type LifecycleEvent } from './domain-lifecycle.js';
import { mainThreadNatives } from './main-thread-natives.js';

export interface ConnectionCallbackReceiver {
  lifecycle(event: LifecycleEvent): void;
  closed(reason: CloseReason): void;
}

const receivers = new Map<number, ConnectionCallbackReceiver>();
let nextId = 1;
let lifecycleTrampoline: IKoffiRegisteredCallback | null = null;
let closeTrampoline: IKoffiRegisteredCallback | null = null;

/** Registers a receiver; the id goes to libvirt as the callbacks' opaque argument. */
export function addCallbackReceiver(receiver: ConnectionCallbackReceiver): number {
  const id = nextId++;
  receivers.set(id, receiver);
  return id;
}

export function removeCallbackReceiver(id: number): void {
  receivers.delete(id);
}

function onLifecycle(_conn: NativeAddress, dom: NativeAddress, event: number, detail: number, opaque: NativeAddress): number {
  const receiver = receivers.get(Number(opaque));
  const names = lifecycleEventNames(event, detail);
  if (receiver === undefined || names === null) return 0;
  const natives = mainThreadNatives();
  const delivered: LifecycleEvent = {
    uuid: natives.domainUuid(dom) ?? '',
    name: natives.domainName(dom) ?? '',
    event: names.event,
    detail: names.detail,
  };
  setImmediate(() => receiver.lifecycle(delivered));
  return 0;
}

function onClose(_conn: NativeAddress, reason: number, opaque: NativeAddress): void {
  const receiver = receivers.get(Number(opaque));
  if (receiver === undefined) return;
  const name: CloseReason = CLOSE_REASONS[reason] ?? 'unknown';
  setImmediate(() => receiver.closed(name));
}

/** The address of the process's virConnectDomainEventLifecycleCallback. */
export function lifecycleCallbackAddress(): NativeAddress {
  lifecycleTrampoline ??= koffi.register(onLifecycle, koffi.pointer(mainThreadNatives().types.lifecycle));
  return Number(koffi.address(lifecycleTrampoline));
}

/** The address of the process's virConnectCloseFunc. */
export function closeCallbackAddress(): NativeAddress {
  closeTrampoline ??= koffi.register(onClose, koffi.pointer(mainThreadNatives().types.close));
  return Number(koffi.address(closeTrampoline));
}
