import { NovaletError } from '../../config/novalet-error.js';
import type { NativeAddress } from './call-pool.js';
import {
  ACPI_POWER_BUTTON,
  DEFAULT_UNDEFINE_FLAGS,
  DomainAffect,
  METADATA_TYPES,
  type MetadataType,
} from './constants.js';
import { domainStateName, type DomainStateName } from './domain-lifecycle.js';
import { assertForkSafe } from './fork-safety.js';
import { isLibvirtError } from './error.js';
import * as native from './functions.js';
import { mainThreadNatives } from './main-thread-natives.js';

/** Frees the virDomainPtr of a LibvirtDomain that was garbage-collected without free(). */
const unfreed = new FinalizationRegistry<NativeAddress>((address) => {
  native.domainFree(address).catch(() => undefined);
});

export interface LibvirtDomainOptions {
  /** libvirt forks QEMU from this process (embedded driver), not from a daemon. */
  startsQemuInProcess?: boolean;
}

export interface DomainState {
  state: DomainStateName;
  /** libvirt's reason number for the state (virDomainRunningReason, virDomainShutoffReason, …). */
  reason: number;
}

/**
 * A libvirt domain (virDomainPtr). Holds a reference on libvirt's object until
 * free(); a FinalizationRegistry frees it if the object is dropped without it.
 * Every operation that asks the hypervisor runs on a libvirt call thread.
 */
export class LibvirtDomain {
  readonly uuid: string;
  readonly name: string;
  #address: NativeAddress | null;
  readonly #startsQemuInProcess: boolean;

  /** Takes ownership of a virDomainPtr reference (from define, lookup, list…). */
  constructor(address: NativeAddress, options: LibvirtDomainOptions = {}) {
    const natives = mainThreadNatives();
    // Both read fields of libvirt's virDomain object; neither asks the driver or takes a lock.
    const uuid = natives.domainUuid(address);
    const name = natives.domainName(address);
    if (uuid === null || name === null) {
      throw new NovaletError('LIBVIRT_INVALID_DOMAIN', `The address ${address} is not a libvirt domain.`);
    }
    this.uuid = uuid;
    this.name = name;
    this.#address = address;
    this.#startsQemuInProcess = options.startsQemuInProcess ?? false;
    unfreed.register(this, address, this);
  }

  get freed(): boolean {
    return this.#address === null;
  }

  /** The virDomainPtr, for calls this class does not wrap. */
  get address(): NativeAddress {
    if (this.#address === null) {
      throw new NovaletError(
        'LIBVIRT_DOMAIN_FREED',
        `The handle of domain ${this.name} (${this.uuid}) has been freed.`,
        'Look the domain up again on its connection.',
      );
    }
    return this.#address;
  }

  #what(action: string): string {
    return `${action} domain ${this.name} (${this.uuid})`;
  }

  /** Starts the defined domain: libvirt runs QEMU (virDomainCreate). */
  async create(): Promise<void> {
    if (this.#startsQemuInProcess) assertForkSafe(this.#what('start'));
    await native.domainFlagsCall(this.address, 'virDomainCreateWithFlags', 0, this.#what('start'));
  }

  /** Stops the domain at once, like pulling the plug (virDomainDestroy). */
  async destroy(): Promise<void> {
    await native.domainFlagsCall(this.address, 'virDomainDestroyFlags', 0, this.#what('destroy'));
  }

  /** Asks the guest to power off by pressing its ACPI power button; returns before the guest has stopped. */
  async shutdown(): Promise<void> {
    await native.domainFlagsCall(this.address, 'virDomainShutdownFlags', ACPI_POWER_BUTTON, this.#what('shut down'));
  }

  /** Asks the guest to reboot through ACPI; returns before the guest has rebooted. */
  async reboot(): Promise<void> {
    await native.domainFlagsCall(this.address, 'virDomainReboot', ACPI_POWER_BUTTON, this.#what('reboot'));
  }

  /** Removes the domain's persistent definition (with managed save, snapshot and checkpoint metadata and NVRAM by default). */
  async undefine(flags: number = DEFAULT_UNDEFINE_FLAGS): Promise<void> {
    await native.domainFlagsCall(this.address, 'virDomainUndefineFlags', flags, this.#what('undefine'));
  }

  /**
   * Stops the domain if it runs and removes its definition, whatever state
   * it is in: for cleaning up after a failed launch, a delete, or a test.
   * A domain already stopped, transient or undefined is not an error.
   */
  async remove(): Promise<void> {
    try {
      if (await this.isActive()) await this.destroy();
    } catch (error) {
      // Gone already, or stopped meanwhile: nothing to stop. Anything else (a job that never ends) is the caller's to hear.
      if (!isGoneAlready(error)) throw error;
    }
    try {
      await this.undefine();
    } catch (error) {
      // Transient (gone once stopped), or undefined already.
      if (!isGoneAlready(error)) throw error;
    }
  }

  async getState(): Promise<DomainState> {
    const { state, reason } = await native.domainGetState(this.address, this.#what('read the state of'));
    return { state: domainStateName(state), reason };
  }

  async isActive(): Promise<boolean> {
    return native.domainPredicate(this.address, 'virDomainIsActive', this.#what('ask whether it runs:'));
  }

  async isPersistent(): Promise<boolean> {
    return native.domainPredicate(this.address, 'virDomainIsPersistent', this.#what('ask whether it is defined:'));
  }

  /** The domain XML; flags from DomainXml (INACTIVE for the persistent definition of a running domain). */
  async getXmlDesc(flags = 0): Promise<string> {
    return native.domainGetXmlDesc(this.address, flags, this.#what('describe'));
  }

  /**
   * Sets (or with `metadata` null, removes) metadata. For 'element', `metadata`
   * is one XML element, stored under namespace `uri` with prefix `key`.
   * Without `flags`, a running domain gets it live and, when persistent, in its
   * definition too; a stopped one in its definition.
   */
  async setMetadata(
    type: MetadataType,
    metadata: string | null,
    key: string | null,
    uri: string | null,
    flags?: number,
  ): Promise<void> {
    const impact = flags ?? (await this.#bothImpacts());
    await native.domainSetMetadata(this.address, METADATA_TYPES[type], metadata, key, uri, impact, this.#what('set metadata on'));
  }

  /** Reads metadata ('element' by namespace `uri`); null when the domain has none. Defaults to the live state of a running domain. */
  async getMetadata(type: MetadataType, uri: string | null, flags: number = DomainAffect.CURRENT): Promise<string | null> {
    try {
      return await native.domainGetMetadata(this.address, METADATA_TYPES[type], uri, flags, this.#what('read metadata of'));
    } catch (error) {
      if (isLibvirtError(error, 'VIR_ERR_NO_DOMAIN_METADATA')) return null;
      throw error;
    }
  }

  async #bothImpacts(): Promise<number> {
    if (!(await this.isActive())) return DomainAffect.CONFIG;
    return (await this.isPersistent()) ? DomainAffect.LIVE | DomainAffect.CONFIG : DomainAffect.LIVE;
  }

  /**
   * Releases libvirt's object (virDomainFree); the domain itself is not
   * affected. The handle is unusable at once; the promise never rejects (a
   * failed free only leaks the handle), so callers may leave it unawaited.
   * Safe to call twice.
   */
  async free(): Promise<void> {
    const address = this.#address;
    if (address === null) return;
    this.#address = null;
    unfreed.unregister(this);
    await native.domainFree(address).catch(() => undefined);
  }
}

/** libvirt's words for a domain that is not there (any more) or not running: what remove() takes as done. */
function isGoneAlready(error: unknown): boolean {
  return isLibvirtError(error, 'VIR_ERR_NO_DOMAIN') || isLibvirtError(error, 'VIR_ERR_OPERATION_INVALID');
}
