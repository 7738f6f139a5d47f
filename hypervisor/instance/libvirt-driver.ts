import path from 'node:path';
import { rm } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { effectiveConnectionUri } from '../../config/effective-values.js';
import type { NovaletConfig } from '../../config/novalet-config.js';
import type { SupportedInstance } from '../../messaging/contracts/capability-report.js';
import type { EffectiveVirtType, KvmVerdict } from '../../messaging/contracts/kvm-verdict.js';
import type { GuestCpu } from '../cpu/guest.js';
import { checkGuestCpu, type CheckedGuestCpu } from '../cpu/guest-check.js';
import { gatherHostCpuReport } from '../cpu/host-report.js';
import { emulatorFor } from '../host/tools.js';
import { untilAborted } from '../libvirt/abandoned-calls.js';
import { parseCapabilities } from '../libvirt/capabilities.js';
import type { LibvirtConnection } from '../libvirt/connection.js';
import type { DomainStateName } from '../libvirt/domain-lifecycle.js';
import type { LibvirtDomain } from '../libvirt/domain.js';
import { decideVirtType, type VirtTypeDecision, type VirtTypeQuestion } from '../virt-type/decision.js';
import { asKvmFault, KvmUnavailableError } from '../virt-type/kvm-fault.js';
import { lastLines } from './console-log.js';
import { buildDomainXml, NOVALET_DOMAIN_PREFIX } from './domain-xml.js';
import type {
  ComputeDriver,
  DriverHostCapabilities,
  DriverInstance,
  InstanceLifecycleEvent,
  LifecycleSubscription,
  PowerState,
  RebootOptions,
  RebootType,
  SpawnedInstance,
  SpawnOptions,
} from './driver-interface.js';
import { fileModesFor, type FileModes } from './file-modes.js';
import { ImageCache, type CachedImage } from './image-cache.js';
import { downloadLimitsFrom } from './image-download.js';
import type { DomainOwner } from './metadata.js';
import { ARCH_DEFAULTS, CONSOLE_LOG, LaunchError, prepareInstance, requireReadable } from './preparation.js';
import { hardReboot, softReboot } from './reboot.js';
import { isImageUrl, type ValidInstanceSpec } from './spec.js';

export { CONSOLE_LOG, LaunchError } from './preparation.js';
import { supportedInstances } from './supported-instances.js';

export { supportedInstances };

/**
 * The ComputeDriver on libvirt's QEMU driver (nova's LibvirtDriver): the one
 * launch path, used by the compute agent and by `novalet run` — virt type
 * decision, image cache and overlay, kernel files, CPU options, domain XML,
 * define and start — and the operations on the guests it made. A spawn that
 * fails at any step leaves nothing behind: no domain, no instance folder.
 * Only domains named novalet-<uuid> are this driver's.
 */

/** What the driver needs to know of the host; compute-host.ts finds it out. */
export interface DriverHost {
  arch: string;
  /** The verdict including the self-test's evidence. */
  verdict: KvmVerdict;
  /** The host's virt type, decided once by the assembly (virt-type/known-host.ts). */
  virtType: VirtTypeDecision;
  /** Guest architecture → QEMU system emulator. */
  qemuEmulators: Record<string, string>;
}

/** What a libvirt spawn made, beyond the interface's answer: where its files and console are. */
export interface LaunchedInstance extends SpawnedInstance {
  domainName: string;
  instanceDir: string;
  consoleLog: string;
  image: CachedImage | null;
}

export interface LibvirtDriverOptions {
  connection: LibvirtConnection;
  config: NovaletConfig;
  host: DriverHost;
  /** Where each instance's folder goes (`[DEFAULT] instances_path`). */
  instancesPath: string;
  /** The image cache; `<instances_path>/_base`, with the configured limits and modes, unless given. */
  imageCache?: ImageCache;
  /** Recorded in each domain's metadata, so that a start-up sweep knows whose it is (leftovers.ts). */
  owner?: DomainOwner;
}

/** The image cache at `baseDir` with the configured download limits, URL rules and the modes the connection needs. */
export function imageCacheFor(config: NovaletConfig, baseDir: string): ImageCache {
  return new ImageCache(baseDir, {
    limits: downloadLimitsFrom(config.DEFAULT),
    urlRules: config.import_filtering_opts,
    reservedHostDiskMb: config.DEFAULT.reserved_host_disk_mb,
    modes: fileModesFor(effectiveConnectionUri(config)),
  });
}

/** libvirt's domain states as nova's power states (nova/virt/libvirt/driver.py LIBVIRT_POWER_STATE). */
const POWER_STATE: Record<DomainStateName, PowerState> = {
  nostate: 'nostate',
  running: 'running',
  blocked: 'running',
  paused: 'paused',
  shutdown: 'shutdown',
  shutoff: 'shutdown',
  crashed: 'crashed',
  pmsuspended: 'suspended',
};

export class LibvirtDriver implements ComputeDriver {
  readonly imageCache: ImageCache;
  /** The checked guest CPU per virt type (and whether TCG is the fallback): one libvirt query each. */
  readonly #guestCpus = new Map<string, Promise<CheckedGuestCpu>>();

  /** Modes of instance folders and their files: who may read a guest's disk (file-modes.ts). */
  readonly modes: FileModes;

  constructor(private readonly options: LibvirtDriverOptions) {
    this.modes = fileModesFor(effectiveConnectionUri(options.config));
    this.imageCache = options.imageCache ?? imageCacheFor(options.config, path.join(options.instancesPath, '_base'));
  }

  get connection(): LibvirtConnection {
    return this.options.connection;
  }

  instanceDir(uuid: string): string {
    return path.join(this.options.instancesPath, uuid);
  }

  /**
   * The virt type of an instance of `guestArch` (the host's by default) that
   * asks for `requested` or whose image says `imageHvType`: the host's own
   * decision (made once, by the assembly) when it asks for nothing else,
   * else the per-instance decision (virt-type/decision.ts).
   */
  virtTypeOf(question: Pick<VirtTypeQuestion, 'guestArch' | 'requested' | 'imageHvType'> = {}): VirtTypeDecision {
    const { config, host } = this.options;
    const guestArch = question.guestArch ?? host.arch;
    if (guestArch === host.arch && question.requested === undefined && question.imageHvType === undefined) return host.virtType;
    return decideVirtType({ libvirt: config.libvirt, verdict: host.verdict, hostArch: host.arch, ...question, guestArch });
  }

  /** The virt type an instance runs with, and why; throws the fault when it cannot run. */
  private virtTypeFor(spec: ValidInstanceSpec, guestArch: string): VirtTypeDecision & { effective: EffectiveVirtType } {
    const decision = this.virtTypeOf({ guestArch, requested: spec.virtType, imageHvType: spec.imageProperties.img_hv_type });
    if (decision.effective === null) throw new KvmUnavailableError(decision.reason);
    return { ...decision, effective: decision.effective };
  }

  /**
   * The guest CPU for instances of the host's architecture under a virt
   * type, checked against libvirt's domain capabilities: what every launch
   * uses. A bad CPU setting throws a GuestCpuError that says what is usable.
   */
  guestCpu(virtType: EffectiveVirtType, fellBack: boolean): Promise<CheckedGuestCpu> {
    const key = `${virtType}:${fellBack}`;
    let checked = this.#guestCpus.get(key);
    if (!checked) {
      const { host, config, connection } = this.options;
      const emulator = emulatorFor(host.qemuEmulators, host.arch);
      checked = checkGuestCpu({ connection, libvirt: config.libvirt, virtType, fellBack, emulator, arch: host.arch });
      // A failed check is not kept: the next launch asks libvirt again.
      checked.catch(() => this.#guestCpus.delete(key));
      this.#guestCpus.set(key, checked);
    }
    return checked;
  }

  /** The configured guest CPU for guests of the host's architecture; an emulated default for others. */
  private async cpuFor(guestArch: string, decided: VirtTypeDecision & { effective: EffectiveVirtType }): Promise<{ cpu: GuestCpu | null } & LaunchedInstance['guestCpu']> {
    if (guestArch !== this.options.host.arch) {
      const model = ARCH_DEFAULTS[guestArch]?.cpuModel;
      const cpu: GuestCpu | null = model ? { mode: 'custom', model, features: [], check: 'none' } : null;
      return { cpu, setting: model ? `cpu_mode = custom, model ${model} (the default for ${guestArch} guests)` : 'cpu_mode = none', substitution: null };
    }
    try {
      const { cpu, setting, substitution } = await this.guestCpu(decided.effective, decided.fellBack);
      return { cpu, setting, substitution };
    } catch (err) {
      // The first place libvirt can refuse KVM is its domain capabilities for it.
      throw asKvmFault(err, decided.effective, this.options.host.verdict);
    }
  }

  /**
   * The one launch path. Aborting `options.signal` stops it at any step —
   * libvirt's first look at the emulator (abandoned, not waited for), the
   * download, qemu-img, the copies, the definition, the start — removes
   * what it made, and rejects with the signal's reason.
   */
  async spawn(spec: ValidInstanceSpec, options: SpawnOptions = {}): Promise<LaunchedInstance> {
    const { signal } = options;
    try {
      signal?.throwIfAborted();
      return await this.#launch(spec, signal);
    } catch (err) {
      if (signal?.aborted) throw signal.reason;
      throw err;
    }
  }

  async #launch(spec: ValidInstanceSpec, signal: AbortSignal | undefined): Promise<LaunchedInstance> {
    const { config, host, connection } = this.options;
    const guestArch = spec.imageProperties.hw_architecture ?? host.arch;
    const decided = this.virtTypeFor(spec, guestArch);
    const emulator = emulatorFor(host.qemuEmulators, guestArch);
    // In a fresh root this is where libvirt probes QEMU (seconds): not waited for past an abort; it makes nothing.
    const { cpu, ...guestCpu } = await untilAborted(this.cpuFor(guestArch, decided), signal);
    if (spec.kernel && !isImageUrl(spec.kernel)) await requireReadable(spec.kernel, 'kernel');
    if (spec.ramdisk && !isImageUrl(spec.ramdisk)) await requireReadable(spec.ramdisk, 'ramdisk');
    const context = { instancesPath: this.options.instancesPath, modes: this.modes, imageCache: this.imageCache, owner: this.options.owner };
    const { def, image } = await prepareInstance(context, spec, { config, guestArch, decided, emulator, cpu }, signal);
    let domain: LibvirtDomain | null = null;
    try {
      // Define and start take a second at most: awaited, then the abort is honoured by removing the domain.
      domain = await connection.defineDomain(buildDomainXml(def));
      signal?.throwIfAborted();
      await domain.create();
      signal?.throwIfAborted();
    } catch (err) {
      // The launch's own failure is what the caller needs to hear; a removal that fails too leaves the domain to the next delete.
      await domain?.remove().catch(() => undefined);
      await rm(this.instanceDir(spec.uuid), { recursive: true, force: true });
      throw asKvmFault(err, def.virtType, host.verdict);
    } finally {
      domain?.free();
    }
    return {
      uuid: def.uuid,
      domainName: def.domainName,
      virtType: def.virtType,
      virtTypeReason: def.metadata.virtTypeReason,
      instanceDir: this.instanceDir(def.uuid),
      consoleLog: def.consoleLog,
      image,
      guestCpu,
    };
  }

  private async withDomain<T>(uuid: string, action: (domain: LibvirtDomain) => Promise<T>): Promise<T> {
    const domain = await this.options.connection.lookupByUuid(uuid);
    if (!domain || !domain.name.startsWith(NOVALET_DOMAIN_PREFIX)) {
      domain?.free();
      throw new LaunchError('INSTANCE_NOT_FOUND', `No instance ${uuid} exists on this host.`, 'Check the UUID against the instances this host reports.');
    }
    try {
      return await action(domain);
    } finally {
      domain.free();
    }
  }

  powerOff(uuid: string, timeoutMs: number): Promise<'clean' | 'forced'> {
    return this.withDomain(uuid, async (d) => {
      if (!(await d.isActive())) return 'clean';
      if (timeoutMs > 0) {
        await d.shutdown();
        const deadline = Date.now() + timeoutMs;
        while (Date.now() < deadline) {
          if (!(await d.isActive())) return 'clean';
          await sleep(200);
        }
      }
      if (await d.isActive()) await d.destroy();
      return 'forced';
    });
  }

  powerOn(uuid: string): Promise<void> {
    return this.withDomain(uuid, async (d) => {
      if (!(await d.isActive())) await d.create();
    });
  }

  reboot(uuid: string, type: RebootType, options: RebootOptions = {}): Promise<RebootType> {
    return this.withDomain(uuid, async (d) => {
      if (type === 'HARD') return hardReboot(d);
      if (!(await d.isActive())) throw new LaunchError('INSTANCE_NOT_RUNNING', `Instance ${uuid} is not running, so it cannot be rebooted softly.`, 'Start it, or reboot it HARD.');
      const timeoutMs = options.softTimeoutMs ?? this.options.config.libvirt.wait_soft_reboot_seconds * 1000;
      return softReboot(d, timeoutMs, options.signal);
    });
  }

  state(uuid: string): Promise<PowerState> {
    return this.withDomain(uuid, async (d) => POWER_STATE[(await d.getState()).state]);
  }

  async list(): Promise<DriverInstance[]> {
    const domains = await this.options.connection.listAllDomains();
    try {
      const ours = domains.filter((d) => d.name.startsWith(NOVALET_DOMAIN_PREFIX));
      return await Promise.all(ours.map(async (d) => ({ uuid: d.uuid, state: POWER_STATE[(await d.getState()).state] })));
    } finally {
      for (const d of domains) d.free();
    }
  }

  /** Stops the guest, forgets the domain and removes the instance's files. */
  async destroy(uuid: string): Promise<void> {
    const domain = await this.options.connection.lookupByUuid(uuid);
    try {
      if (domain?.name.startsWith(NOVALET_DOMAIN_PREFIX)) await domain.remove();
    } finally {
      domain?.free();
    }
    await rm(this.instanceDir(uuid), { recursive: true, force: true });
  }

  async consoleOutput(uuid: string, lines: number): Promise<string[]> {
    await this.withDomain(uuid, async () => undefined);
    return lastLines(path.join(this.instanceDir(uuid), CONSOLE_LOG), lines);
  }

  async hostCapabilities(): Promise<DriverHostCapabilities> {
    const { connection, config, host } = this.options;
    // Host capabilities once, for the CPU report and for supported_instances.
    const capabilities = parseCapabilities(await connection.getCapabilities());
    const [cpu, version, hostname] = await Promise.all([
      gatherHostCpuReport({ connection, libvirt: config.libvirt, verdict: host.verdict, virtType: host.virtType, emulators: host.qemuEmulators, capabilities }),
      connection.getLibVersionNumber(),
      connection.getHostname(),
    ]);
    const cpuModels: DriverHostCapabilities['cpu_models'] = {};
    for (const [virtType, report] of Object.entries(cpu.virt_types)) cpuModels[virtType as EffectiveVirtType] = report.usable_models;
    return {
      hypervisor_type: 'QEMU',
      hypervisor_version: version,
      hypervisor_hostname: hostname,
      cpu_info: cpu.cpu_info,
      supported_instances: supportedInstances(capabilities.guests, host.arch, host.verdict),
      kvm: host.verdict,
      effective_virt_type: cpu.guest_cpu.virt_type,
      cpu_models: cpuModels,
      traits: cpu.guest_cpu.traits,
      cpu,
    };
  }

  onLifecycleEvent(listener: (event: InstanceLifecycleEvent) => void): LifecycleSubscription {
    return this.options.connection.onLifecycleEvent((event) => {
      if (!event.name.startsWith(NOVALET_DOMAIN_PREFIX)) return;
      const crashed = event.event === 'crashed' || (event.event === 'stopped' && (event.detail === 'crashed' || event.detail === 'failed'));
      const transition = crashed ? 'crashed' : TRANSITIONS[event.event];
      if (transition === undefined) return;
      listener({ uuid: event.uuid, transition, byGuest: transition === 'stopped' && event.detail === 'shutdown', detail: event.detail });
    });
  }
}

/** libvirt's lifecycle events that are state changes of a guest (definitions coming and going are not). */
const TRANSITIONS: Partial<Record<string, InstanceLifecycleEvent['transition']>> = {
  started: 'started',
  stopped: 'stopped',
  suspended: 'paused',
  resumed: 'resumed',
};
