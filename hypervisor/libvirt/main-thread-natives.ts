/**
 * The few libvirt functions novalet calls on Node's main thread, because they
 * cannot block: the event loop's registration and wake-up, the process-wide
 * error handler, and the accessors that read a virDomain's own fields (name,
 * UUID) without asking the driver. Everything that can wait on the hypervisor
 * goes through call-pool.ts instead.
 */
import type { IKoffiCType, KoffiFunction } from 'koffi';
import { koffi } from './koffi.js';
import { loadLibvirt } from './library.js';
import type { NativeAddress } from './call-pool.js';

/** VIR_UUID_STRING_BUFLEN: 36 characters and the terminating NUL. */
const UUID_STRING_BUFLEN = 37;

export interface MainThreadNatives {
  eventRegisterDefaultImpl: () => number;
  /** Only ever called through `.async`: it blocks until an event or timeout fires. */
  eventRunDefaultImpl: KoffiFunction;
  eventAddTimeout: (frequencyMs: number, callback: unknown, opaque: null, free: null) => number;
  eventRemoveTimeout: (timer: number) => number;
  domainName: (domain: NativeAddress) => string | null;
  domainUuid: (domain: NativeAddress) => string | null;
  /** C callback types for koffi.register(). */
  types: {
    timeout: IKoffiCType;
    lifecycle: IKoffiCType;
    close: IKoffiCType;
  };
}

let natives: MainThreadNatives | null = null;

/** A named C callback type, declared once per process even if this module is evaluated again. */
function callbackType(name: string, definition: string): IKoffiCType {
  try {
    return koffi.resolve(name);
  } catch {
    return koffi.proto(definition);
  }
}

export function mainThreadNatives(): MainThreadNatives {
  if (natives !== null) return natives;
  const lib = loadLibvirt();
  const timeout = callbackType('novaletEventTimeoutCallback', 'void novaletEventTimeoutCallback(int timer, void *opaque)');
  const lifecycle = callbackType(
    'novaletDomainEventLifecycleCallback',
    'int novaletDomainEventLifecycleCallback(uintptr_t conn, uintptr_t dom, int event, int detail, uintptr_t opaque)',
  );
  const close = callbackType(
    'novaletConnectCloseFunc',
    'void novaletConnectCloseFunc(uintptr_t conn, int reason, uintptr_t opaque)',
  );
  const getName = lib.func('const char *virDomainGetName(uintptr_t domain)');
  const getUuid = lib.func('int virDomainGetUUIDString(uintptr_t domain, _Out_ uint8_t *buf)');
  const setErrorFunc = lib.func('void virSetErrorFunc(void *userData, void *handler)');

  // Without a handler libvirt prints every failed call to stderr (virDefaultErrorFunc);
  // novalet reports errors itself. The handler must be native: a JS handler would be
  // relayed to the main thread and make every failing call thread wait for it.
  // virResetError(NULL) returns at once, and the handler's first argument is the
  // userData given here, NULL; the second argument is ignored by the C calling convention.
  setErrorFunc(null, lib.symbol('virResetError', 'void'));

  natives = {
    eventRegisterDefaultImpl: lib.func('int virEventRegisterDefaultImpl(void)') as () => number,
    eventRunDefaultImpl: lib.func('int virEventRunDefaultImpl(void)'),
    eventAddTimeout: lib.func(
      'int virEventAddTimeout(int frequency, novaletEventTimeoutCallback *cb, void *opaque, void *ff)',
    ) as MainThreadNatives['eventAddTimeout'],
    eventRemoveTimeout: lib.func('int virEventRemoveTimeout(int timer)') as (timer: number) => number,
    domainName: (domain) => getName(domain) as string | null,
    domainUuid: (domain) => {
      const buffer = Buffer.alloc(UUID_STRING_BUFLEN);
      if ((getUuid(domain, buffer) as number) < 0) return null;
      return buffer.toString('latin1', 0, buffer.indexOf(0));
    },
    types: { timeout, lifecycle, close },
  };
  return natives;
}
