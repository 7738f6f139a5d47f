import { access, chmod, constants, copyFile, mkdir, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { configuredMachineType, effectiveConnectionUri } from '../../config/effective-values.js';
import { maskUrlCredentials } from '../../config/mask-credentials.js';
import type { NovaletConfig } from '../../config/novalet-config.js';
import { NovaletError } from '../../config/novalet-error.js';
import type { SupportedInstance } from '../../messaging/contracts/capability-report.js';
import type { EffectiveVirtType, KvmVerdict } from '../../messaging/contracts/kvm-verdict.js';
import type {
  ComputeDriver,
  DriverHostCapabilities,
  DriverInstance,
  InstanceLifecycleEvent,
  LifecycleSubscription,
  PowerState,
  RebootType,
  SpawnedInstance,
  SpawnOptions,
} from '../compute-driver.js';
import type { GuestCpu } from '../cpu/guest.js';
import { checkGuestCpu, type CheckedGuestCpu } from '../cpu/guest-check.js';
import { gatherHostCpuReport } from '../cpu/host-report.js';
import { emulatorFor } from '../host/tools.js';
import { parseCapabilities } from '../libvirt/capabilities.js';
import type { LibvirtConnection } from '../libvirt/connection.js';
import type { DomainStateName } from '../libvirt/domain-lifecycle.js';
import type { LibvirtDomain } from '../libvirt/domain.js';
import { decideVirtType, type VirtTypeDecision } from '../virt-type/decision.js';
import { asKvmFault, KvmUnavailableError } from '../virt-type/kvm-fault.js';
import { lastLines } from './console-log.js';
import { buildDomainXml, domainNameFor, NOVALET_DOMAIN_PREFIX, type DomainDefinition } from './domain-xml.js';
import { fileModesFor, type FileModes } from './file-modes.js';
import { ImageCache, type CachedImage } from './image-cache.js';
import { downloadLimitsFrom } from './image-download.js';
import type { DomainOwner } from './metadata.js';
import { createOverlay } from './qemu-img.js';
import { isImageUrl, type ValidInstanceSpec } from './spec.js';

/**
 * The ComputeDriver on libvirt's QEMU driver (nova's LibvirtDriver): the one
 * launch path, used by the compute agent and by `novalet run` — virt type
 * decision, image cache and overlay, kernel files, CPU options, domain XML,
 * define and start — and the operations on the guests it made. A spawn that
 * fails at any step leaves nothing behind: no domain, no instance folder.
 * Only domains named novalet-<uuid> are this driver's.
 */

export class LaunchError extends NovaletError {}

/** What the driver needs to know of the host; compute-host.ts finds it out. */
export interface DriverHost {
  arch: string;
  /** The verdict including the self-test's evidence. */
  verdict: KvmVerdict;
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

export const CONSOLE_LOG = 'console.log';

/** The image cache at `baseDir` with the configured download limits, URL rules and the modes the connection needs. */
export function imageCacheFor(config: NovaletConfig, baseDir: string): ImageCache {
  return new ImageCache(baseDir, {
    limits: downloadLimitsFrom(config.DEFAULT),
    urlRules: config.import_filtering_opts,
    reservedHostDiskMb: config.DEFAULT.reserved_host_disk_mb,
    modes: fileModesFor(effectiveConnectionUri(config)),
  });
}

/**
 * Defaults for Arm guests, where libvirt's own are unusable for a kernel
 * boot (its default machine for aarch64 is the obsolete integratorcp, and
 * QEMU's default CPU there is 32-bit): nova's choices, the virt machine
 * with a Cortex CPU that TCG emulates.
 */
const ARCH_DEFAULTS: Record<string, { machine: string; cpuModel: string }> = {
  aarch64: { machine: 'virt', cpuModel: 'cortex-a57' },
  armv7l: { machine: 'virt', cpuModel: 'cortex-a15' },
};

async function requireReadable(file: string, what: string): Promise<void> {
  try {
    await access(file, constants.R_OK);
    // A directory passes access(); copying it would fail with EISDIR.
    if (!(await stat(file)).isFile()) throw Object.assign(new Error('not a regular file'), { code: 'not a regular file' });
  } catch (err) {
    throw new LaunchError('INSTANCE_FILE_MISSING', `The ${what} ${file} cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'}).`, `Give the path of an existing ${what} file.`);
  }
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

  /** The virt type an instance runs with, and why (virt-type/decision.ts). */
  private virtTypeFor(spec: ValidInstanceSpec, guestArch: string): VirtTypeDecision & { effective: EffectiveVirtType } {
    const { config, host } = this.options;
    const decision = decideVirtType({
      libvirt: config.libvirt,
      verdict: host.verdict,
      hostArch: host.arch,
      guestArch,
      requested: spec.virtType,
      imageHvType: spec.imageProperties.img_hv_type,
    });
    if (decision.effective === null) throw new KvmUnavailableError(decision.reason);
    return { ...decision, effective: decision.effective };
  }

  /** Everything up to the domain's definition; throws before touching libvirt when the spec cannot run. */
  private async prepare(spec: ValidInstanceSpec, signal: AbortSignal | undefined): Promise<{ def: DomainDefinition; image: CachedImage | null; guestCpu: LaunchedInstance['guestCpu'] }> {
    const { config, host } = this.options;
    const guestArch = spec.imageProperties.hw_architecture ?? host.arch;
    const decided = this.virtTypeFor(spec, guestArch);
    const emulator = emulatorFor(host.qemuEmulators, guestArch);
    const { cpu, ...guestCpu } = await this.cpuFor(guestArch, decided);
    if (spec.kernel && !isImageUrl(spec.kernel)) await requireReadable(spec.kernel, 'kernel');
    if (spec.ramdisk && !isImageUrl(spec.ramdisk)) await requireReadable(spec.ramdisk, 'ramdisk');

    const dir = this.instanceDir(spec.uuid);
    await mkdir(this.options.instancesPath, { recursive: true });
    try {
      await mkdir(dir, { recursive: false, mode: this.modes.dir });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
        throw new LaunchError('INSTANCE_EXISTS', `An instance ${spec.uuid} already has files in ${dir}.`, 'Delete that instance first, or use another UUID.');
      }
      throw err;
    }
    try {
      // mkdir's mode is masked by the umask: set it exactly.
      await chmod(dir, this.modes.dir);
      let image: CachedImage | null = null;
      let disk: DomainDefinition['disk'] = null;
      if (spec.image) {
        image = await this.imageCache.fetch(spec.image, { signal });
        const overlay = path.join(dir, 'disk');
        await createOverlay(image.path, image.format, overlay);
        // qemu-img creates it by the umask (0644 as a rule); the guest's writes are its data.
        await chmod(overlay, this.modes.file);
        disk = { path: overlay, format: 'qcow2' };
      }
      // Copies, so that the guest can still boot after the caller's files change; URLs come through the image cache.
      const kernel = spec.kernel ? path.join(dir, 'kernel') : null;
      const ramdisk = spec.ramdisk ? path.join(dir, 'ramdisk') : null;
      const local = async (source: string | undefined, checksum: string | undefined): Promise<string | undefined> =>
        source && isImageUrl(source) ? (await this.imageCache.fetch({ source, checksum }, { signal })).path : source;
      const [kernelFrom, ramdiskFrom] = await Promise.all([local(spec.kernel, spec.kernelChecksum), local(spec.ramdisk, spec.ramdiskChecksum)]);
      await Promise.all([
        kernelFrom && kernel ? copyFile(kernelFrom, kernel, constants.COPYFILE_FICLONE) : null,
        ramdiskFrom && ramdisk ? copyFile(ramdiskFrom, ramdisk, constants.COPYFILE_FICLONE) : null,
      ]);
      // copyFile keeps the source's mode; the copies are as private as the disk.
      await Promise.all([kernel, ramdisk].map((f) => (f ? chmod(f, this.modes.file) : null)));
      const def: DomainDefinition = {
        uuid: spec.uuid,
        domainName: domainNameFor(spec.uuid),
        virtType: decided.effective,
        arch: guestArch,
        machine: spec.imageProperties.hw_machine_type ?? configuredMachineType(config.libvirt.hw_machine_type, guestArch) ?? ARCH_DEFAULTS[guestArch]?.machine ?? null,
        emulator,
        vcpus: spec.vcpus,
        memoryMiB: spec.memoryMiB,
        disk,
        kernel,
        initrd: ramdisk,
        cmdline: spec.cmdline ?? null,
        consoleLog: path.join(dir, CONSOLE_LOG),
        cpu,
        metadata: {
          name: spec.name,
          createdAt: new Date().toISOString(),
          vcpus: spec.vcpus,
          memoryMiB: spec.memoryMiB,
          // The domain XML is readable by anyone libvirt lets in: no URL password.
          image: spec.image ? maskUrlCredentials(spec.image.source) : null,
          virtType: decided.effective,
          virtTypeReason: decided.reason,
          ...(this.options.owner ? { owner: this.options.owner } : {}),
        },
      };
      return { def, image, guestCpu };
    } catch (err) {
      await rm(dir, { recursive: true, force: true });
      throw err;
    }
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

  async spawn(spec: ValidInstanceSpec, options: SpawnOptions = {}): Promise<LaunchedInstance> {
    const { def, image, guestCpu } = await this.prepare(spec, options.signal);
    let domain: LibvirtDomain | null = null;
    try {
      domain = await this.options.connection.defineDomain(buildDomainXml(def));
      await domain.create();
    } catch (err) {
      await domain?.remove();
      await rm(this.instanceDir(spec.uuid), { recursive: true, force: true });
      throw asKvmFault(err, def.virtType, this.options.host.verdict);
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

  reboot(uuid: string, type: RebootType): Promise<void> {
    return this.withDomain(uuid, async (d) => {
      if (type === 'SOFT') {
        if (!(await d.isActive())) throw new LaunchError('INSTANCE_NOT_RUNNING', `Instance ${uuid} is not running, so it cannot be rebooted softly.`, 'Start it, or reboot it HARD.');
        return d.reboot();
      }
      // nova's hard reboot: the guest is power-cycled from the definition it has.
      if (await d.isActive()) await d.destroy();
      await d.create();
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
      gatherHostCpuReport({ connection, libvirt: config.libvirt, verdict: host.verdict, emulators: host.qemuEmulators, capabilities }),
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

/**
 * nova's supported_instances: [arch, hv_type, 'hvm'] for every guest
 * architecture libvirt can run here and each virt type it can run it with —
 * never kvm where the verdict says KVM is unusable (libvirt lists kvm
 * wherever /dev/kvm opens), and never kvm for a foreign architecture.
 */
export function supportedInstances(guests: ReturnType<typeof parseCapabilities>['guests'], hostArch: string, verdict: KvmVerdict): SupportedInstance[] {
  const found: SupportedInstance[] = [];
  for (const guest of guests.filter((g) => g.osType === 'hvm')) {
    if (guest.domainTypes.includes('qemu')) found.push([guest.arch, 'qemu', 'hvm']);
    if (guest.domainTypes.includes('kvm') && guest.arch === hostArch && verdict.usable) found.push([guest.arch, 'kvm', 'hvm']);
  }
  return found;
}
