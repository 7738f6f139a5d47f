import { NovaletError } from '../../config/novalet-error.js';
import { formatLibvirtVersion } from './library.js';
import { addCallbackReceiver, closeCallbackAddress, lifecycleCallbackAddress, removeCallbackReceiver } from './connection-callbacks.js';
import type { LifecycleEvent } from './domain-lifecycle.js';
import { noteEmbeddedOpened, noteEmbeddedStartFailed } from './embedded-driver-state.js';
import { embeddedRootOf } from './embedded-root.js';
import { assertForkSafe } from './fork-safety.js';
import { explainOpenFailure } from './open-failure.js';
import { acquireEventLoop, releaseEventLoop } from './event-loop.js';
import type { NativeAddress } from './call-pool.js';
import { DOMAIN_EVENT_ID_LIFECYCLE, KEEPALIVE_COUNT, KEEPALIVE_INTERVAL_S, type CloseReason } from './constants.js';
import { LibvirtDomain } from './domain.js';
import { isLibvirtError, LibvirtError } from './error.js';
import * as native from './functions.js';

export type LifecycleListener = (event: LifecycleEvent) => void;
export type CloseListener = (reason: CloseReason) => void;

/** Stops the subscription; `ready` settles once libvirt has registered it (rejects if libvirt refused). */
export type LifecycleSubscription = (() => void) & { ready: Promise<void> };

export type CpuComparison = 'incompatible' | 'identical' | 'superset';
const CPU_COMPARISONS: readonly CpuComparison[] = ['incompatible', 'identical', 'superset'];

export type DomainCapabilitiesQuery = native.DomainCapabilitiesQuery;
export type HypervisorCpuTarget = native.HypervisorCpuTarget;

/** Throws listener errors on a later turn, where they surface as uncaught exceptions, as EventEmitter's would. */
function callListener<T>(listener: (value: T) => void, value: T): void {
  try {
    listener(value);
  } catch (error) {
    queueMicrotask(() => {
      throw error;
    });
  }
}

/**
 * A connection to libvirt (virConnectPtr). Every call that can block runs on a
 * libvirt call thread; libvirt's event loop runs while any connection is open.
 */
export class LibvirtConnection {
  readonly uri: string;
  /** libvirt reports this connection breaking (remote URIs: keepalive and close callback); embedded ones cannot break. */
  readonly watchesClose: boolean;
  /** The embedded driver: libvirt runs in this process and forks QEMU from it. */
  readonly embedded: boolean;
  #address: NativeAddress | null;
  #closing: Promise<void> | null = null;
  readonly #receiverId: number;
  readonly #inFlight = new Set<Promise<unknown>>();
  readonly #lifecycleListeners = new Set<LifecycleListener>();
  readonly #closeListeners = new Set<CloseListener>();
  /** libvirt's callback id for our lifecycle subscription, while we have one. */
  #lifecycleRegistration: Promise<number> | null = null;

  private constructor(uri: string, address: NativeAddress, watchesClose: boolean, receiverId: number) {
    this.uri = uri;
    this.#address = address;
    this.watchesClose = watchesClose;
    this.embedded = embeddedRootOf(uri) !== null;
    this.#receiverId = receiverId;
  }

  /**
   * Opens `uri` (virConnectOpen). The first connection to a fresh embedded
   * root probes each QEMU binary when capabilities are first needed (seconds);
   * later ones read libvirt's cache.
   */
  static async open(uri: string): Promise<LibvirtConnection> {
    acquireEventLoop();
    const root = embeddedRootOf(uri);
    let address: NativeAddress;
    try {
      address = await native.connectOpen(uri);
    } catch (error) {
      releaseEventLoop();
      if (!(error instanceof LibvirtError)) throw error;
      const explained = explainOpenFailure(uri, error);
      if (root !== null && explained.code !== 'EMBEDDED_ROOT_CONFLICT' && explained.code !== 'EMBEDDED_DRIVER_DOWN') {
        noteEmbeddedStartFailed(explained);
      }
      throw explained;
    }
    if (root !== null) noteEmbeddedOpened(root);
    let connection: LibvirtConnection | null = null;
    const receiverId = addCallbackReceiver({
      lifecycle: (event) => {
        if (connection !== null) connection.#deliverLifecycle(event);
      },
      closed: (reason) => {
        if (connection !== null) connection.#deliverClose(reason);
      },
    });
    const watchesClose = root === null && (await LibvirtConnection.#watchClose(address, receiverId));
    connection = new LibvirtConnection(uri, address, watchesClose, receiverId);
    return connection;
  }

  /** Keepalive and a close callback, for drivers that have a socket to lose; false where the driver has neither. */
  static async #watchClose(address: NativeAddress, receiverId: number): Promise<boolean> {
    try {
      await native.connectRegisterCloseCallback(address, closeCallbackAddress(), receiverId);
    } catch (error) {
      if (isLibvirtError(error)) return false;
      throw error;
    }
    // 1 means the other side does not support keepalive; the close callback still reports EOF.
    await native.connectSetKeepAlive(address, KEEPALIVE_INTERVAL_S, KEEPALIVE_COUNT).catch(() => undefined);
    return true;
  }

  get closed(): boolean {
    return this.#address === null || this.#closing !== null;
  }

  /** The virConnectPtr, for calls this class does not wrap. */
  get address(): NativeAddress {
    if (this.#address === null || this.#closing !== null) {
      throw new NovaletError(
        'LIBVIRT_CONNECTION_CLOSED',
        `The libvirt connection to ${this.uri} is closed.`,
        'Open a new connection with LibvirtConnection.open().',
      );
    }
    return this.#address;
  }

  /** Runs a call that uses the connection pointer; close() waits for it, so the pointer outlives every call. */
  #use<T>(operation: (address: NativeAddress) => Promise<T>): Promise<T> {
    let running: Promise<T>;
    try {
      running = operation(this.address);
    } catch (error) {
      return Promise.reject(error);
    }
    this.#inFlight.add(running);
    const forget = () => this.#inFlight.delete(running);
    running.then(forget, forget);
    return running;
  }

  /** Closes the connection after the calls in flight; listeners stop. Domains keep their own handles until freed. */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    const address = this.#address!;
    await Promise.allSettled([...this.#inFlight]);
    this.#lifecycleListeners.clear();
    this.#closeListeners.clear();
    await this.#dropLifecycleRegistration(address);
    if (this.watchesClose) {
      await native.connectUnregisterCloseCallback(address, closeCallbackAddress()).catch(() => undefined);
    }
    removeCallbackReceiver(this.#receiverId);
    try {
      await native.connectClose(address);
    } finally {
      this.#address = null;
      releaseEventLoop();
    }
  }

  /** The host capabilities XML (virConnectGetCapabilities). */
  getCapabilities(): Promise<string> {
    return this.#use((address) => native.connectGetCapabilities(address));
  }

  /** The domain capabilities XML for one emulator, architecture, machine and virt type (virConnectGetDomainCapabilities). */
  getDomainCapabilities(query: DomainCapabilitiesQuery = {}): Promise<string> {
    return this.#use((address) => native.connectGetDomainCapabilities(address, query));
  }

  /** libvirt's version as "major.minor.micro" (virConnectGetLibVersion). */
  async getLibVersion(): Promise<string> {
    return formatLibvirtVersion(await this.getLibVersionNumber());
  }

  /** libvirt's version as libvirt encodes it: major * 1,000,000 + minor * 1,000 + micro (nova's hypervisor_version). */
  getLibVersionNumber(): Promise<number> {
    return this.#use((address) => native.connectGetLibVersion(address));
  }

  /** The host's name as libvirt knows it (virConnectGetHostname; nova's hypervisor_hostname). */
  getHostname(): Promise<string> {
    return this.#use((address) => native.connectGetHostname(address));
  }

  /** Defines a persistent domain, or updates the definition with the same UUID (virDomainDefineXML). */
  async defineDomain(xml: string): Promise<LibvirtDomain> {
    return this.#domain(await this.#use((address) => native.domainDefineXml(address, xml)));
  }

  /** Starts a transient domain: it exists only while it runs (virDomainCreateXML). */
  async createTransient(xml: string, flags = 0): Promise<LibvirtDomain> {
    if (this.embedded) assertForkSafe('start a transient domain');
    return this.#domain(await this.#use((address) => native.domainCreateXml(address, xml, flags)));
  }

  /** The domain with this UUID, or null when there is none. */
  lookupByUuid(uuid: string): Promise<LibvirtDomain | null> {
    return this.#lookup(() => this.#use((address) => native.domainLookupByUuidString(address, uuid)));
  }

  /** The domain with this name, or null when there is none. */
  lookupByName(name: string): Promise<LibvirtDomain | null> {
    return this.#lookup(() => this.#use((address) => native.domainLookupByName(address, name)));
  }

  #domain(address: NativeAddress): LibvirtDomain {
    return new LibvirtDomain(address, { startsQemuInProcess: this.embedded });
  }

  async #lookup(find: () => Promise<NativeAddress>): Promise<LibvirtDomain | null> {
    try {
      return this.#domain(await find());
    } catch (error) {
      if (isLibvirtError(error, 'VIR_ERR_NO_DOMAIN')) return null;
      throw error;
    }
  }

  /** Every domain, running or defined (virConnectListAllDomains; flags filter, 0 for all). */
  async listAllDomains(flags = 0): Promise<LibvirtDomain[]> {
    const addresses = await this.#use((address) => native.connectListAllDomains(address, flags));
    return addresses.map((address) => this.#domain(address));
  }

  /**
   * How a CPU definition (`<cpu>` XML) compares with what the hypervisor can
   * provide for the target (virConnectCompareHypervisorCPU).
   */
  async compareHypervisorCpu(cpuXml: string, target: HypervisorCpuTarget = {}, flags = 0): Promise<CpuComparison> {
    const result = await this.#use((address) => native.connectCompareHypervisorCpu(address, target, cpuXml, flags));
    return CPU_COMPARISONS[result] ?? 'incompatible';
  }

  /** The most capable CPU that every given `<cpu>` definition can run, as `<cpu>` XML (virConnectBaselineHypervisorCPU). */
  baselineHypervisorCpu(cpuXmls: string[], target: HypervisorCpuTarget = {}, flags = 0): Promise<string> {
    return this.#use((address) => native.connectBaselineHypervisorCpu(address, target, cpuXmls, flags));
  }

  /**
   * Calls `listener` for every domain lifecycle event on this connection
   * (VIR_DOMAIN_EVENT_ID_LIFECYCLE), on the main thread. Returns the function
   * that stops it; await its `ready` before causing events you must not miss.
   */
  onLifecycleEvent(listener: LifecycleListener): LifecycleSubscription {
    const address = this.address;
    this.#lifecycleListeners.add(listener);
    this.#lifecycleRegistration ??= native
      .connectDomainEventRegisterAny(address, DOMAIN_EVENT_ID_LIFECYCLE, lifecycleCallbackAddress(), this.#receiverId)
      .catch((error: unknown) => {
        this.#lifecycleRegistration = null;
        throw error;
      });
    const ready = this.#lifecycleRegistration.then(() => undefined);
    ready.catch(() => undefined);
    const unsubscribe = () => {
      if (this.#lifecycleListeners.delete(listener) && this.#lifecycleListeners.size === 0 && !this.closed) {
        void this.#use((current) => this.#dropLifecycleRegistration(current)).catch(() => undefined);
      }
    };
    return Object.assign(unsubscribe, { ready });
  }

  async #dropLifecycleRegistration(address: NativeAddress): Promise<void> {
    const registration = this.#lifecycleRegistration;
    this.#lifecycleRegistration = null;
    if (registration === null) return;
    const callbackId = await registration.catch(() => null);
    if (callbackId !== null) await native.connectDomainEventDeregisterAny(address, callbackId).catch(() => undefined);
  }

  /** Calls `listener` if libvirt reports the connection broken (only where `watchesClose`). Returns the function that stops it. */
  onClose(listener: CloseListener): () => void {
    this.#closeListeners.add(listener);
    return () => {
      this.#closeListeners.delete(listener);
    };
  }

  #deliverLifecycle(event: LifecycleEvent): void {
    for (const listener of [...this.#lifecycleListeners]) callListener(listener, event);
  }

  #deliverClose(reason: CloseReason): void {
    for (const listener of [...this.#closeListeners]) callListener(listener, reason);
  }
}
