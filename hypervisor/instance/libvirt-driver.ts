import { access, constants, copyFile, mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { configuredMachineType } from '../../config/effective-values.js';
import type { NovaletConfig } from '../../config/novalet-config.js';
import { NovaletError } from '../../config/novalet-error.js';
import { lastLines } from './console-log.js';
import { buildDomainXml, domainNameFor, type DomainDefinition } from './domain-xml.js';
import type { KvmVerdict } from '../host/facts.js';
import type { GuestCpu } from '../cpu/guest.js';
import { checkGuestCpu, type CheckedGuestCpu } from '../cpu/guest-check.js';
import { ImageCache, type CachedImage } from './image-cache.js';
import type { ValidInstanceSpec } from './spec.js';
import { asKvmFault, KvmUnavailableError } from '../virt-type/kvm-fault.js';
import type { LibvirtConnection } from '../libvirt/connection.js';
import type { LibvirtDomain } from '../libvirt/domain.js';
import { createOverlay } from './qemu-img.js';
import { decideInstanceVirtType, type EffectiveVirtType, type InstanceVirtType } from '../virt-type/decision.js';

/**
 * The one launch path, used by the compute agent and by `novalet run`:
 * virt type decision, image cache and overlay, kernel files, CPU options,
 * domain XML, define and start. A launch that fails at any step leaves
 * nothing behind: no domain, no instance folder.
 */

export class LaunchError extends NovaletError {}

export interface LaunchHost {
  arch: string;
  /** The verdict including the self-test's evidence. */
  verdict: KvmVerdict;
  /** Guest architecture → QEMU system emulator. */
  qemuEmulators: Record<string, string>;
}

export interface LaunchedInstance {
  uuid: string;
  domainName: string;
  virtType: 'kvm' | 'qemu';
  virtTypeReason: string;
  instanceDir: string;
  consoleLog: string;
  image: CachedImage | null;
  /** The guest CPU setting used, and what stood in for the configured one, if anything did. */
  guestCpu: { setting: string; substitution: string | null };
}

export interface LauncherOptions {
  connection: LibvirtConnection;
  config: NovaletConfig;
  host: LaunchHost;
  /** Where each instance's folder goes (`[DEFAULT] instances_path`). */
  instancesPath: string;
  /** The image cache; `<instances_path>/_base` unless given. */
  imageCache?: ImageCache;
}

export const CONSOLE_LOG = 'console.log';

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
  } catch (err) {
    throw new LaunchError('INSTANCE_FILE_MISSING', `The ${what} ${file} cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'}).`, `Give the path of an existing ${what}.`);
  }
}

export class InstanceLauncher {
  readonly imageCache: ImageCache;
  /** The checked guest CPU per virt type (and whether TCG is the fallback): one libvirt query each. */
  readonly #guestCpus = new Map<string, Promise<CheckedGuestCpu>>();

  constructor(private readonly options: LauncherOptions) {
    this.imageCache = options.imageCache ?? new ImageCache(path.join(options.instancesPath, '_base'));
  }

  instanceDir(uuid: string): string {
    return path.join(this.options.instancesPath, uuid);
  }

  /** Everything up to the domain's definition; throws before touching libvirt when the spec cannot run. */
  private async prepare(spec: ValidInstanceSpec): Promise<{ def: DomainDefinition; image: CachedImage | null; guestCpu: LaunchedInstance['guestCpu'] }> {
    const { config, host } = this.options;
    const guestArch = spec.imageProperties.hw_architecture ?? host.arch;
    const decided = decideInstanceVirtType({
      libvirt: config.libvirt,
      verdict: host.verdict,
      hostArch: host.arch,
      guestArch,
      requested: spec.virtType,
      imageHvType: spec.imageProperties.img_hv_type,
    });
    if ('fault' in decided) throw new KvmUnavailableError(decided.fault);
    const emulator = host.qemuEmulators[guestArch];
    if (!emulator) {
      throw new LaunchError('NO_EMULATOR', `No QEMU system emulator for ${guestArch} guests is installed here.`, `Install it (for Arm: qemu-system-arm), or use an image for ${host.arch}.`);
    }
    const { cpu, ...guestCpu } = await this.cpuFor(guestArch, decided);
    if (spec.kernel) await requireReadable(spec.kernel, 'kernel');
    if (spec.ramdisk) await requireReadable(spec.ramdisk, 'ramdisk');

    const dir = this.instanceDir(spec.uuid);
    await mkdir(this.options.instancesPath, { recursive: true });
    try {
      await mkdir(dir, { recursive: false });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
        throw new LaunchError('INSTANCE_EXISTS', `An instance ${spec.uuid} already has files in ${dir}.`, 'Delete that instance first, or use another UUID.');
      }
      throw err;
    }
    try {
      let image: CachedImage | null = null;
      let disk: DomainDefinition['disk'] = null;
      if (spec.image) {
        image = await this.imageCache.fetch(spec.image);
        const overlay = path.join(dir, 'disk');
        await createOverlay(image.path, image.format, overlay);
        disk = { path: overlay, format: 'qcow2' };
      }
      // Copies, so that the guest can still boot after the caller's files change.
      const kernel = spec.kernel ? path.join(dir, 'kernel') : null;
      const ramdisk = spec.ramdisk ? path.join(dir, 'ramdisk') : null;
      await Promise.all([
        spec.kernel && kernel ? copyFile(spec.kernel, kernel, constants.COPYFILE_FICLONE) : null,
        spec.ramdisk && ramdisk ? copyFile(spec.ramdisk, ramdisk, constants.COPYFILE_FICLONE) : null,
      ]);
      const def: DomainDefinition = {
        uuid: spec.uuid,
        domainName: domainNameFor(spec.uuid),
        virtType: decided.virtType,
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
          image: spec.image?.source ?? null,
          virtType: decided.virtType,
          virtTypeReason: decided.reason,
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
   * type, checked against libvirt's domain capabilities: the start-up check
   * the compute service runs, and what every launch uses. A bad CPU setting
   * throws a GuestCpuError that says what is usable.
   */
  guestCpu(virtType: EffectiveVirtType, fellBack: boolean): Promise<CheckedGuestCpu> {
    const key = `${virtType}:${fellBack}`;
    let checked = this.#guestCpus.get(key);
    if (!checked) {
      const { host, config, connection } = this.options;
      const emulator = host.qemuEmulators[host.arch];
      if (!emulator) throw new LaunchError('NO_EMULATOR', `No QEMU system emulator for ${host.arch} guests is installed here.`, 'Install qemu-system-x86 (or the one for this architecture).');
      checked = checkGuestCpu({ connection, libvirt: config.libvirt, virtType, fellBack, emulator, arch: host.arch });
      // A failed check is not kept: the next launch asks libvirt again.
      checked.catch(() => this.#guestCpus.delete(key));
      this.#guestCpus.set(key, checked);
    }
    return checked;
  }

  /** The configured guest CPU for guests of the host's architecture; an emulated default for others. */
  private async cpuFor(guestArch: string, decided: InstanceVirtType): Promise<{ cpu: GuestCpu | null } & LaunchedInstance['guestCpu']> {
    if (guestArch !== this.options.host.arch) {
      const model = ARCH_DEFAULTS[guestArch]?.cpuModel;
      const cpu: GuestCpu | null = model ? { mode: 'custom', model, features: [], check: 'none' } : null;
      return { cpu, setting: model ? `cpu_mode = custom, model ${model} (the default for ${guestArch} guests)` : 'cpu_mode = none', substitution: null };
    }
    try {
      const { cpu, setting, substitution } = await this.guestCpu(decided.virtType, decided.fellBack);
      return { cpu, setting, substitution };
    } catch (err) {
      // The first place libvirt can refuse KVM is its domain capabilities for it.
      throw asKvmFault(err, decided.virtType, this.options.host.verdict);
    }
  }

  async spawn(spec: ValidInstanceSpec): Promise<LaunchedInstance> {
    const { def, image, guestCpu } = await this.prepare(spec);
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

  private async domain(uuid: string): Promise<LibvirtDomain> {
    const domain = await this.options.connection.lookupByUuid(uuid);
    if (!domain) throw new LaunchError('INSTANCE_NOT_FOUND', `No domain for instance ${uuid} exists on this host.`, 'List the instances with `novalet list`.');
    return domain;
  }

  private async withDomain<T>(uuid: string, action: (domain: LibvirtDomain) => Promise<T>): Promise<T> {
    const domain = await this.domain(uuid);
    try {
      return await action(domain);
    } finally {
      domain.free();
    }
  }

  /** Hard stop (virsh destroy): the guest is killed, its definition and files stay. */
  destroy(uuid: string): Promise<void> {
    return this.withDomain(uuid, async (d) => {
      if (await d.isActive()) await d.destroy();
    });
  }

  /**
   * nova's clean shutdown: press the ACPI power button, give the guest
   * `timeoutMs` to power itself off, then pull the plug.
   */
  powerOff(uuid: string, timeoutMs = 60_000): Promise<'clean' | 'forced'> {
    return this.withDomain(uuid, async (d) => {
      if (!(await d.isActive())) return 'clean';
      await d.shutdown();
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        if (!(await d.isActive())) return 'clean';
        await sleep(200);
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

  reboot(uuid: string): Promise<void> {
    return this.withDomain(uuid, (d) => d.reboot());
  }

  state(uuid: string) {
    return this.withDomain(uuid, (d) => d.getState());
  }

  /** Stops the guest, forgets the domain and removes the instance's files. */
  async delete(uuid: string): Promise<void> {
    const domain = await this.options.connection.lookupByUuid(uuid);
    try {
      await domain?.remove();
    } finally {
      domain?.free();
    }
    await rm(this.instanceDir(uuid), { recursive: true, force: true });
  }

  consoleLog(uuid: string, lines: number): Promise<string[]> {
    return lastLines(path.join(this.instanceDir(uuid), CONSOLE_LOG), lines);
  }
}
