import { randomUUID } from 'node:crypto';
import { statSync } from 'node:fs';
import { NovaletError } from '../../config/novalet-error.js';
import {
  ARCHITECTURE_NAME,
  IMAGE_HV_TYPES,
  MACHINE_TYPE_NAME,
  MAX_MEMORY_MIB,
  MAX_NAME_LENGTH,
  MAX_VCPUS,
  MIN_MEMORY_MIB,
} from '../../messaging/contracts/instance-limits.js';

/**
 * What a caller asks for when it launches an instance: the nova flavor's
 * vCPUs and memory, an image (a disk, or kernel + ramdisk + command line),
 * and nova's image properties. `validateInstanceSpec` refuses nonsense
 * before anything is fetched, created or defined.
 */

export interface ImageRef {
  /** A local file path or an http(s) URL. */
  source: string;
  /** `sha256:<64 hex>`; required for URLs, checked for files when given. */
  checksum?: string | undefined;
}

/** nova's image properties that decide how a guest runs. */
export interface ImageProperties {
  /** nova's hw_architecture: the guest's architecture (x86_64, aarch64, …). */
  hw_architecture?: string | undefined;
  /** nova's img_hv_type: the hypervisor type the image needs (kvm, qemu). */
  img_hv_type?: string | undefined;
  /** nova's hw_machine_type (pc, q35, virt, …). */
  hw_machine_type?: string | undefined;
}

export interface InstanceSpec {
  uuid?: string | undefined;
  /** The display name; any text (it is escaped), no control characters. */
  name: string;
  vcpus: number;
  /** MiB. */
  memoryMiB: number;
  /** The root disk image; absent for a diskless kernel boot. */
  image?: ImageRef | undefined;
  /** A local file, or an http(s) URL with `kernelChecksum` (fetched into the image cache). */
  kernel?: string | undefined;
  kernelChecksum?: string | undefined;
  /** A local file, or an http(s) URL with `ramdiskChecksum`. */
  ramdisk?: string | undefined;
  ramdiskChecksum?: string | undefined;
  cmdline?: string | undefined;
  imageProperties?: ImageProperties | undefined;
  /** Requested virt type (`novalet run --virt-type`); else the configuration decides. */
  virtType?: 'kvm' | 'qemu' | undefined;
}

export interface ValidInstanceSpec extends InstanceSpec {
  uuid: string;
  imageProperties: ImageProperties;
}

/** Limits that catch typos, not policy; one definition with the bus's check (messaging/contracts/instance-limits.ts). */
export { MAX_MEMORY_MIB, MAX_NAME_LENGTH, MAX_VCPUS, MIN_MEMORY_MIB };

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const SHA256 = /^sha256:[0-9a-f]{64}$/;
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;

export class InstanceSpecError extends NovaletError {
  constructor(
    readonly field: string,
    message: string,
    remedy: string,
  ) {
    super('INSTANCE_SPEC_INVALID', message, remedy);
  }
}

export function isImageUrl(source: string): boolean {
  return /^https?:\/\//i.test(source);
}

/**
 * A kernel or ramdisk that is there but is a directory or a device is
 * nonsense, refused here; one that cannot be read at all is the launch's to
 * report (INSTANCE_FILE_MISSING), as the file may appear meanwhile.
 */
function requireRegularFile(field: 'kernel' | 'ramdisk', file: string): void {
  let stat;
  try {
    stat = statSync(file);
  } catch {
    return;
  }
  if (stat.isFile()) return;
  const what = stat.isDirectory() ? 'a directory' : 'not a regular file (a device, pipe or socket)';
  throw new InstanceSpecError(field, `The ${field} ${file} is ${what}.`, `Give the path of a ${field} image file (novalet run --${field} FILE).`);
}

export function validateInstanceSpec(spec: InstanceSpec): ValidInstanceSpec {
  const uuid = (spec.uuid ?? randomUUID()).toLowerCase();
  if (!UUID.test(uuid)) {
    throw new InstanceSpecError('uuid', `The instance UUID '${spec.uuid}' is not a UUID.`, 'Give one like 6f1c2a3e-0b4d-4c5e-8f9a-0123456789ab, or none to have one made.');
  }
  if (typeof spec.name !== 'string' || spec.name.length === 0 || spec.name.length > MAX_NAME_LENGTH) {
    throw new InstanceSpecError('name', `The instance name must be 1 to ${MAX_NAME_LENGTH} characters long.`, 'Give a shorter, non-empty name.');
  }
  if (CONTROL.test(spec.name)) {
    throw new InstanceSpecError('name', 'The instance name contains a control character.', 'Use printable characters only.');
  }
  if (!Number.isInteger(spec.vcpus) || spec.vcpus < 1 || spec.vcpus > MAX_VCPUS) {
    throw new InstanceSpecError('vcpus', `vCPUs = ${spec.vcpus} is not allowed: give a whole number from 1 to ${MAX_VCPUS}.`, 'Ask for fewer vCPUs.');
  }
  if (!Number.isInteger(spec.memoryMiB) || spec.memoryMiB < MIN_MEMORY_MIB || spec.memoryMiB > MAX_MEMORY_MIB) {
    throw new InstanceSpecError(
      'memoryMiB',
      `memory = ${spec.memoryMiB} MiB is not allowed: give a whole number of MiB from ${MIN_MEMORY_MIB} to ${MAX_MEMORY_MIB}.`,
      'Ask for a sensible amount of memory, such as 256.',
    );
  }
  if (!spec.image && !spec.kernel) {
    throw new InstanceSpecError('image', 'The instance has nothing to boot: neither an image nor a kernel.', 'Give --image FILE|URL, or --kernel (with --ramdisk and --cmdline as needed).');
  }
  if ((spec.ramdisk || spec.cmdline) && !spec.kernel) {
    throw new InstanceSpecError('kernel', 'A ramdisk or kernel command line was given without a kernel.', 'Give --kernel too, or drop --ramdisk/--cmdline.');
  }
  for (const [field, file, checksum] of [['kernel', spec.kernel, spec.kernelChecksum], ['ramdisk', spec.ramdisk, spec.ramdiskChecksum]] as const) {
    if (!file) continue;
    if (!isImageUrl(file)) {
      requireRegularFile(field, file);
      continue;
    }
    if (checksum === undefined || !SHA256.test(checksum.toLowerCase())) {
      throw new InstanceSpecError(`${field}Checksum`, `The ${field} URL ${file} has no checksum of the form sha256:<64 hex digits>: a download cannot be trusted without one.`, `Give the ${field}'s SHA-256.`);
    }
  }
  if (spec.cmdline !== undefined && CONTROL.test(spec.cmdline)) {
    throw new InstanceSpecError('cmdline', 'The kernel command line contains a control character.', 'Use printable characters only.');
  }
  if (spec.image) {
    const { source, checksum } = spec.image;
    if (checksum !== undefined && !SHA256.test(checksum.toLowerCase())) {
      throw new InstanceSpecError('checksum', `The image checksum '${checksum}' is not of the form sha256:<64 hex digits>.`, 'Give the image\'s SHA-256, e.g. from `sha256sum`.');
    }
    if (isImageUrl(source) && checksum === undefined) {
      throw new InstanceSpecError('checksum', `The image URL ${source} has no checksum: a download cannot be trusted without one.`, 'Give --checksum sha256:<hex>.');
    }
  }
  const props = spec.imageProperties ?? {};
  if (props.hw_architecture !== undefined && !ARCHITECTURE_NAME.test(props.hw_architecture)) {
    throw new InstanceSpecError('hw_architecture', `hw_architecture = '${props.hw_architecture}' is not an architecture name.`, 'Use a name such as x86_64 or aarch64.');
  }
  if (props.hw_machine_type !== undefined && !MACHINE_TYPE_NAME.test(props.hw_machine_type)) {
    throw new InstanceSpecError('hw_machine_type', `hw_machine_type = '${props.hw_machine_type}' is not a machine type name.`, 'Use a name such as pc, q35 or virt.');
  }
  if (props.img_hv_type !== undefined && !(IMAGE_HV_TYPES as readonly string[]).includes(props.img_hv_type)) {
    throw new InstanceSpecError('img_hv_type', `img_hv_type = '${props.img_hv_type}' cannot run here: novalet runs kvm and qemu.`, 'Use img_hv_type kvm or qemu, or none.');
  }
  return { ...spec, uuid, imageProperties: props, image: spec.image ? { ...spec.image, checksum: spec.image.checksum?.toLowerCase() } : undefined };
}

