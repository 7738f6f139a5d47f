/**
 * Everything a libvirt spawn does before libvirt defines the domain: the
 * instance's folder, its root disk (the cached image and a qcow2 overlay),
 * its kernel and ramdisk copies, and the domain definition as data. A
 * preparation that fails or is aborted removes the folder it made; the
 * abort signal is honoured between every step and inside the long ones (the
 * download, qemu-img), and the caller turns an abort into the signal's reason.
 */
import { access, chmod, constants, copyFile, mkdir, rm, stat } from 'node:fs/promises';
import { asDiskFull } from '../../config/disk-full.js';
import path from 'node:path';
import { configuredMachineType } from '../../config/effective-values.js';
import { maskUrlCredentials } from '../../config/mask-credentials.js';
import type { NovaletConfig } from '../../config/novalet-config.js';
import { NovaletError } from '../../config/novalet-error.js';
import type { EffectiveVirtType } from '../../messaging/contracts/kvm-verdict.js';
import type { GuestCpu } from '../cpu/guest.js';
import type { VirtTypeDecision } from '../virt-type/decision.js';
import { domainNameFor, type DomainDefinition } from './domain-xml.js';
import type { FileModes } from './file-modes.js';
import type { CachedImage, ImageCache } from './image-cache.js';
import type { DomainOwner } from './metadata.js';
import { createOverlay } from './qemu-img.js';
import { isImageUrl, type ValidInstanceSpec } from './spec.js';

export class LaunchError extends NovaletError {}

export const CONSOLE_LOG = 'console.log';

/**
 * Defaults for Arm guests, where libvirt's own are unusable for a kernel
 * boot (its default machine for aarch64 is the obsolete integratorcp, and
 * QEMU's default CPU there is 32-bit): nova's choices, the virt machine
 * with a Cortex CPU that TCG emulates.
 */
export const ARCH_DEFAULTS: Record<string, { machine: string; cpuModel: string }> = {
  aarch64: { machine: 'virt', cpuModel: 'cortex-a57' },
  armv7l: { machine: 'virt', cpuModel: 'cortex-a15' },
};

export async function requireReadable(file: string, what: string): Promise<void> {
  try {
    await access(file, constants.R_OK);
    // A directory passes access(); copying it would fail with EISDIR.
    if (!(await stat(file)).isFile()) throw Object.assign(new Error('not a regular file'), { code: 'not a regular file' });
  } catch (err) {
    throw new LaunchError('INSTANCE_FILE_MISSING', `The ${what} ${file} cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'}).`, `Give the path of an existing ${what} file.`);
  }
}

/** What the driver decided before any file is made: the instance's virt type, emulator and guest CPU. */
export interface LaunchChoices {
  config: NovaletConfig;
  guestArch: string;
  decided: VirtTypeDecision & { effective: EffectiveVirtType };
  emulator: string;
  cpu: GuestCpu | null;
}

export interface PreparationContext {
  instancesPath: string;
  modes: FileModes;
  imageCache: ImageCache;
  owner: DomainOwner | undefined;
}

/** The instance's folder, disk and kernel files made, and its definition: throws (the folder removed) on failure or abort. */
export async function prepareInstance(
  context: PreparationContext,
  spec: ValidInstanceSpec,
  choices: LaunchChoices,
  signal: AbortSignal | undefined,
): Promise<{ def: DomainDefinition; image: CachedImage | null }> {
  const { modes, imageCache } = context;
  const { config, guestArch, decided } = choices;
  const dir = path.join(context.instancesPath, spec.uuid);
  await mkdir(context.instancesPath, { recursive: true });
  signal?.throwIfAborted();
  try {
    await mkdir(dir, { recursive: false, mode: modes.dir });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new LaunchError('INSTANCE_EXISTS', `An instance ${spec.uuid} already has files in ${dir}.`, 'Delete that instance first, or use another UUID.');
    }
    throw err;
  }
  try {
    // mkdir's mode is masked by the umask: set it exactly.
    await chmod(dir, modes.dir);
    let image: CachedImage | null = null;
    let disk: DomainDefinition['disk'] = null;
    if (spec.image) {
      image = await imageCache.fetch(spec.image, { signal });
      signal?.throwIfAborted();
      const overlay = path.join(dir, 'disk');
      await createOverlay(image.path, image.format, overlay, undefined, signal);
      // qemu-img creates it by the umask (0644 as a rule); the guest's writes are its data.
      await chmod(overlay, modes.file);
      disk = { path: overlay, format: 'qcow2' };
    }
    // Copies, so that the guest can still boot after the caller's files change; URLs come through the image cache.
    const kernel = spec.kernel ? path.join(dir, 'kernel') : null;
    const ramdisk = spec.ramdisk ? path.join(dir, 'ramdisk') : null;
    const local = async (source: string | undefined, checksum: string | undefined): Promise<string | undefined> =>
      source && isImageUrl(source) ? (await imageCache.fetch({ source, checksum }, { signal })).path : source;
    const [kernelFrom, ramdiskFrom] = await Promise.all([local(spec.kernel, spec.kernelChecksum), local(spec.ramdisk, spec.ramdiskChecksum)]);
    signal?.throwIfAborted();
    // Awaited, not abandoned at an abort: a copy still writing into the folder could outlive its removal. Kernels copy in milliseconds.
    await Promise.all([
      kernelFrom && kernel ? copyFile(kernelFrom, kernel, constants.COPYFILE_FICLONE) : null,
      ramdiskFrom && ramdisk ? copyFile(ramdiskFrom, ramdisk, constants.COPYFILE_FICLONE) : null,
    ]).catch((err: unknown) => {
      throw asDiskFull(err, dir, 'the copies of the kernel and ramdisk');
    });
    signal?.throwIfAborted();
    // copyFile keeps the source's mode; the copies are as private as the disk.
    await Promise.all([kernel, ramdisk].map((f) => (f ? chmod(f, modes.file) : null)));
    const def: DomainDefinition = {
      uuid: spec.uuid,
      domainName: domainNameFor(spec.uuid),
      virtType: decided.effective,
      arch: guestArch,
      machine: spec.imageProperties.hw_machine_type ?? configuredMachineType(config.libvirt.hw_machine_type, guestArch) ?? ARCH_DEFAULTS[guestArch]?.machine ?? null,
      emulator: choices.emulator,
      vcpus: spec.vcpus,
      memoryMiB: spec.memoryMiB,
      disk,
      kernel,
      initrd: ramdisk,
      cmdline: spec.cmdline ?? null,
      consoleLog: path.join(dir, CONSOLE_LOG),
      cpu: choices.cpu,
      metadata: {
        name: spec.name,
        createdAt: new Date().toISOString(),
        vcpus: spec.vcpus,
        memoryMiB: spec.memoryMiB,
        // The domain XML is readable by anyone libvirt lets in: no URL password.
        image: spec.image ? maskUrlCredentials(spec.image.source) : null,
        virtType: decided.effective,
        virtTypeReason: decided.reason,
        ...(context.owner ? { owner: context.owner } : {}),
      },
    };
    return { def, image };
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}
