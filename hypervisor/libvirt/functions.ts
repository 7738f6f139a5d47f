/**
 * libvirt's C functions that can block, each as an async function that runs
 * on a libvirt call thread (call-pool.ts) and rejects with a
 * LibvirtError carrying libvirt's own error. Pointers to libvirt objects are
 * NativeAddress integers; strings libvirt allocates (`char *!`) are freed by
 * koffi once copied.
 */
import { callLibvirt, type FailureSignal, type NativeAddress } from './call-pool.js';

async function call(operation: string, proto: string, args: unknown[], fails: FailureSignal): Promise<unknown> {
  return (await callLibvirt({ operation, proto, args, fails })).value;
}

async function callWithOut(operation: string, proto: string, args: unknown[], fails: FailureSignal): Promise<unknown[]> {
  return (await callLibvirt({ operation, proto, args, fails })).args;
}

// --- connections -----------------------------------------------------------

export async function connectOpen(uri: string): Promise<NativeAddress> {
  return (await call(`open a connection to ${uri}`, 'uintptr_t virConnectOpen(const char *name)', [uri], 'null')) as NativeAddress;
}

/** Returns the references libvirt still holds on the connection (domains not yet freed keep it open). */
export async function connectClose(conn: NativeAddress): Promise<number> {
  return (await call('close the connection', 'int virConnectClose(uintptr_t conn)', [conn], 'negative')) as number;
}

export async function connectGetCapabilities(conn: NativeAddress): Promise<string> {
  return (await call(
    'report the host capabilities',
    'char *! virConnectGetCapabilities(uintptr_t conn)',
    [conn],
    'null',
  )) as string;
}

export interface DomainCapabilitiesQuery {
  /** Path of the emulator binary, e.g. /usr/bin/qemu-system-x86_64. */
  emulatorbin?: string;
  arch?: string;
  machine?: string;
  /** libvirt's domain type: 'qemu' (TCG) or 'kvm'. */
  virttype?: string;
}

export async function connectGetDomainCapabilities(conn: NativeAddress, query: DomainCapabilitiesQuery): Promise<string> {
  return (await call(
    `report the domain capabilities for ${describeQuery(query)}`,
    'char *! virConnectGetDomainCapabilities(uintptr_t conn, const char *emulatorbin, const char *arch, const char *machine, const char *virttype, unsigned int flags)',
    [conn, query.emulatorbin ?? null, query.arch ?? null, query.machine ?? null, query.virttype ?? null, 0],
    'null',
  )) as string;
}

export function describeQuery(query: DomainCapabilitiesQuery): string {
  const parts = Object.entries(query)
    .filter(([, value]) => value !== undefined && value !== null)
    .map(([key, value]) => `${key}=${String(value)}`);
  return parts.length > 0 ? parts.join(' ') : 'the default emulator';
}

export async function connectGetHostname(conn: NativeAddress): Promise<string> {
  return (await call("report the host's name", 'char *! virConnectGetHostname(uintptr_t conn)', [conn], 'null')) as string;
}

export async function connectGetLibVersion(conn: NativeAddress): Promise<number> {
  const args = await callWithOut(
    "report libvirt's version",
    'int virConnectGetLibVersion(uintptr_t conn, _Out_ unsigned long *libVer)',
    [conn, [0]],
    'negative',
  );
  return Number((args[1] as number[])[0]);
}

export async function connectSetKeepAlive(conn: NativeAddress, intervalS: number, count: number): Promise<number> {
  return (await call(
    'enable keepalive on the connection',
    'int virConnectSetKeepAlive(uintptr_t conn, int interval, unsigned int count)',
    [conn, intervalS, count],
    'negative',
  )) as number;
}

export async function connectRegisterCloseCallback(conn: NativeAddress, callback: NativeAddress, opaque: number): Promise<void> {
  await call(
    'watch the connection for closing',
    'int virConnectRegisterCloseCallback(uintptr_t conn, uintptr_t cb, uintptr_t opaque, uintptr_t freecb)',
    [conn, callback, opaque, 0],
    'negative',
  );
}

export async function connectUnregisterCloseCallback(conn: NativeAddress, callback: NativeAddress): Promise<void> {
  await call(
    'stop watching the connection for closing',
    'int virConnectUnregisterCloseCallback(uintptr_t conn, uintptr_t cb)',
    [conn, callback],
    'negative',
  );
}

/** Returns libvirt's callback id. */
export async function connectDomainEventRegisterAny(
  conn: NativeAddress,
  eventId: number,
  callback: NativeAddress,
  opaque: number,
): Promise<number> {
  return (await call(
    'subscribe to domain events',
    'int virConnectDomainEventRegisterAny(uintptr_t conn, uintptr_t dom, int eventID, uintptr_t cb, uintptr_t opaque, uintptr_t freecb)',
    [conn, 0, eventId, callback, opaque, 0],
    'negative',
  )) as number;
}

export async function connectDomainEventDeregisterAny(conn: NativeAddress, callbackId: number): Promise<void> {
  await call(
    'unsubscribe from domain events',
    'int virConnectDomainEventDeregisterAny(uintptr_t conn, int callbackID)',
    [conn, callbackId],
    'negative',
  );
}

export async function connectListAllDomains(conn: NativeAddress, flags: number): Promise<NativeAddress[]> {
  const outcome = await callLibvirt({
    operation: 'list the domains',
    proto: 'int virConnectListAllDomains(uintptr_t conn, _Out_ void **domains, unsigned int flags)',
    args: [conn, [null], flags],
    fails: 'negative',
    pointerArrayArg: 1,
  });
  return outcome.args[1] as NativeAddress[];
}

export interface HypervisorCpuTarget {
  emulator?: string;
  arch?: string;
  machine?: string;
  virttype?: string;
}

/** virCPUCompareResult: -1 error (rejected), 0 incompatible, 1 identical, 2 superset. */
export async function connectCompareHypervisorCpu(
  conn: NativeAddress,
  target: HypervisorCpuTarget,
  cpuXml: string,
  flags: number,
): Promise<number> {
  return (await call(
    `compare a CPU with what the hypervisor provides (${describeQuery(target)})`,
    'int virConnectCompareHypervisorCPU(uintptr_t conn, const char *emulator, const char *arch, const char *machine, const char *virttype, const char *xmlCPU, unsigned int flags)',
    [conn, target.emulator ?? null, target.arch ?? null, target.machine ?? null, target.virttype ?? null, cpuXml, flags],
    'negative',
  )) as number;
}

export async function connectBaselineHypervisorCpu(
  conn: NativeAddress,
  target: HypervisorCpuTarget,
  cpuXmls: string[],
  flags: number,
): Promise<string> {
  return (await call(
    `compute a baseline CPU (${describeQuery(target)})`,
    'char *! virConnectBaselineHypervisorCPU(uintptr_t conn, const char *emulator, const char *arch, const char *machine, const char *virttype, const char **xmlCPUs, unsigned int ncpus, unsigned int flags)',
    [conn, target.emulator ?? null, target.arch ?? null, target.machine ?? null, target.virttype ?? null, [...cpuXmls, null], cpuXmls.length, flags],
    'null',
  )) as string;
}

// --- domains ---------------------------------------------------------------

export async function domainDefineXml(conn: NativeAddress, xml: string): Promise<NativeAddress> {
  return (await call('define the domain', 'uintptr_t virDomainDefineXML(uintptr_t conn, const char *xml)', [conn, xml], 'null')) as NativeAddress;
}

export async function domainCreateXml(conn: NativeAddress, xml: string, flags: number): Promise<NativeAddress> {
  return (await call(
    'create the transient domain',
    'uintptr_t virDomainCreateXML(uintptr_t conn, const char *xmlDesc, unsigned int flags)',
    [conn, xml, flags],
    'null',
  )) as NativeAddress;
}

export async function domainLookupByUuidString(conn: NativeAddress, uuid: string): Promise<NativeAddress> {
  return (await call(
    `look up the domain with UUID ${uuid}`,
    'uintptr_t virDomainLookupByUUIDString(uintptr_t conn, const char *uuidstr)',
    [conn, uuid],
    'null',
  )) as NativeAddress;
}

export async function domainLookupByName(conn: NativeAddress, name: string): Promise<NativeAddress> {
  return (await call(
    `look up the domain named ${name}`,
    'uintptr_t virDomainLookupByName(uintptr_t conn, const char *name)',
    [conn, name],
    'null',
  )) as NativeAddress;
}

export async function domainFree(domain: NativeAddress): Promise<void> {
  await call('free the domain handle', 'int virDomainFree(uintptr_t domain)', [domain], 'negative');
}

/** A domain operation of the form `int fn(virDomainPtr, unsigned int flags)`. */
export async function domainFlagsCall(domain: NativeAddress, fn: string, flags: number, operation: string): Promise<number> {
  return (await call(operation, `int ${fn}(uintptr_t domain, unsigned int flags)`, [domain, flags], 'negative')) as number;
}

/** A domain question of the form `int fn(virDomainPtr)` answering -1, 0 or 1. */
export async function domainPredicate(domain: NativeAddress, fn: string, operation: string): Promise<boolean> {
  return ((await call(operation, `int ${fn}(uintptr_t domain)`, [domain], 'negative')) as number) === 1;
}

export async function domainGetState(domain: NativeAddress, operation: string): Promise<{ state: number; reason: number }> {
  const args = await callWithOut(
    operation,
    'int virDomainGetState(uintptr_t domain, _Out_ int *state, _Out_ int *reason, unsigned int flags)',
    [domain, [0], [0], 0],
    'negative',
  );
  return { state: (args[1] as number[])[0] ?? 0, reason: (args[2] as number[])[0] ?? 0 };
}

export async function domainGetXmlDesc(domain: NativeAddress, flags: number, operation: string): Promise<string> {
  return (await call(operation, 'char *! virDomainGetXMLDesc(uintptr_t domain, unsigned int flags)', [domain, flags], 'null')) as string;
}

export async function domainSetMetadata(
  domain: NativeAddress,
  type: number,
  metadata: string | null,
  key: string | null,
  uri: string | null,
  flags: number,
  operation: string,
): Promise<void> {
  await call(
    operation,
    'int virDomainSetMetadata(uintptr_t domain, int type, const char *metadata, const char *key, const char *uri, unsigned int flags)',
    [domain, type, metadata, key, uri, flags],
    'negative',
  );
}

export async function domainGetMetadata(
  domain: NativeAddress,
  type: number,
  uri: string | null,
  flags: number,
  operation: string,
): Promise<string> {
  return (await call(
    operation,
    'char *! virDomainGetMetadata(uintptr_t domain, int type, const char *uri, unsigned int flags)',
    [domain, type, uri, flags],
    'null',
  )) as string;
}
