import { excerpt } from './dead-letter.js';
import type { HostFault } from './fault.js';
import { HOST_NAME_PATTERN, MAX_HOST_NAME_LENGTH } from './host-name.js';
import {
  ARCHITECTURE_NAME,
  IMAGE_HV_TYPES,
  MACHINE_TYPE_NAME,
  MAX_MEMORY_MIB,
  MAX_NAME_LENGTH,
  MAX_ROOT_GB,
  MAX_VCPUS,
  MIN_MEMORY_MIB,
} from './instance-limits.js';
import { describeValue, isObject, refused, UUID_PATTERN, type Checked, type Envelope } from './wire.js';

/**
 * The requests a compute host takes on `compute.<host>` (docs/messages.md,
 * "Requests to a compute host"), as they are on the wire, and their check:
 * the whole body, before anything is acknowledged or started. What fails
 * is dead-lettered with BODY_INVALID and a reason that names the field by
 * its JSON path and says what is allowed. Fields the contract does not name
 * are ignored (and not passed on), as nova's RPC does, so that a newer
 * sender's additions do not dead-letter; an optional field that is null is
 * taken as absent.
 */

/** An image, kernel or ramdisk: exactly one of {url + checksum} or {name}. */
export interface ImageSource {
  url?: string;
  checksum?: string;
  name?: string;
}

/** A disk (url + checksum, or name) or a direct kernel boot (kernel, optional ramdisk and cmdline); never both. */
export interface WireImage {
  url?: string;
  checksum?: string;
  name?: string;
  kernel?: ImageSource;
  ramdisk?: ImageSource;
  cmdline?: string;
  properties: Record<string, string>;
}

export interface WireFlavor {
  name: string;
  vcpus: number;
  memory_mb: number;
  root_gb: number;
  extra_specs: Record<string, string>;
}

export interface WireInstance {
  uuid: string;
  name: string;
  flavor: WireFlavor;
  image: WireImage;
}

/** Present when a scheduler placed the build: what a reschedule needs. */
export interface PlacementRequest {
  attempt: number;
  max_attempts: number;
  alternates: string[];
  faults: HostFault[];
}

export interface BuildBody {
  instance: WireInstance;
  request?: PlacementRequest;
}

export type ComputeRequest =
  | { kind: 'build'; body: BuildBody }
  | { kind: 'delete' | 'stop' | 'start' | 'show'; body: { uuid: string } }
  | { kind: 'reboot'; body: { uuid: string; type: 'SOFT' | 'HARD' } }
  | { kind: 'list'; body: Record<string, never> }
  | { kind: 'console'; body: { uuid: string; lines: number } };

export type ComputeRequestKind = ComputeRequest['kind'];

export const COMPUTE_KINDS: readonly ComputeRequestKind[] = ['build', 'delete', 'reboot', 'stop', 'start', 'show', 'list', 'console'];
/** The kinds that are calls: answered on reply_to. The others are casts. */
export const COMPUTE_CALLS: readonly ComputeRequestKind[] = ['show', 'list', 'console'];

export const CONSOLE_DEFAULT_LINES = 100;
export const CONSOLE_MAX_LINES = 10000;

/** The limits of the other fields (docs/messages.md lists them all). */
export const LIMITS = {
  urlLength: 4096,
  imageNameBytes: 255,
  cmdlineLength: 4096,
  mapKeys: 256,
  mapKeyLength: 255,
  mapValueLength: 4096,
  maxAttempts: 100,
  alternates: 100,
  faults: 100,
  faultFieldLength: 4096,
} as const;

const SHA256 = /^sha256:[0-9a-f]{64}$/;
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
const PLAIN_KEY = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Thrown inside the check, caught at its edge: the first field that fails, as a sentence. */
class Refusal {
  constructor(readonly reason: string) {}
}

function refuse(path: string, value: unknown, allowed: string): never {
  throw new Refusal(`${path} is ${describeValue(value)}: ${allowed}.`);
}

function child(path: string, key: string): string {
  return PLAIN_KEY.test(key) ? `${path}.${key}` : `${path}[${excerpt(key)}]`;
}

function present(value: unknown): boolean {
  return value !== undefined && value !== null;
}

function object(value: unknown, path: string, allowed: string): Record<string, unknown> {
  if (!isObject(value)) refuse(path, value, allowed);
  return value;
}

function wholeNumber(value: unknown, path: string, min: number, max: number, maxText = String(max)): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    refuse(path, value, `give a whole number from ${min} to ${maxText}`);
  }
  return value;
}

/** A string of `min`..`max` UTF-16 units (String.length, as spec.ts counts a name), well-formed, and with no control character unless allowed. */
function text(value: unknown, path: string, min: number, max: number, allowed: string, controls: 'refused' | 'nul-only' | 'allowed' = 'refused'): string {
  if (typeof value !== 'string' || value.length < min || value.length > max || LONE_SURROGATE.test(value)) refuse(path, value, allowed);
  if (controls === 'refused' && CONTROL.test(value)) refuse(path, value, allowed);
  if (controls === 'nul-only' && value.includes('\0')) refuse(path, value, allowed);
  return value;
}

function uuid(value: unknown, path: string): string {
  if (typeof value !== 'string' || !UUID_PATTERN.test(value)) refuse(path, value, 'give a UUID such as 0b6c2f1a-8d3e-4f5a-9b7c-1d2e3f4a5b6c');
  return value.toLowerCase();
}

function hostName(value: unknown, path: string): string {
  const allowed = `give a host name of 1 to ${MAX_HOST_NAME_LENGTH} letters, digits, '.', '_', ':' or '-'`;
  const name = text(value, path, 1, MAX_HOST_NAME_LENGTH, allowed);
  if (!HOST_NAME_PATTERN.test(name)) refuse(path, value, allowed);
  return name;
}

/** A string → string map (extra_specs, image properties); built with fromEntries, so a `__proto__` key stays a key. */
function stringMap(value: unknown, path: string): Record<string, string> {
  if (!present(value)) return {};
  const map = object(value, path, `give an object of at most ${LIMITS.mapKeys} string values`);
  const entries = Object.entries(map);
  if (entries.length > LIMITS.mapKeys) refuse(path, value, `give at most ${LIMITS.mapKeys} keys (it has ${entries.length})`);
  for (const [key, item] of entries) {
    if (key.length === 0 || key.length > LIMITS.mapKeyLength || CONTROL.test(key) || LONE_SURROGATE.test(key)) {
      throw new Refusal(`${path} has the key ${excerpt(key)}: give keys of 1 to ${LIMITS.mapKeyLength} characters without control characters.`);
    }
    text(item, child(path, key), 0, LIMITS.mapValueLength, `give a string of at most ${LIMITS.mapValueLength} characters without NUL`, 'nul-only');
  }
  return Object.fromEntries(entries) as Record<string, string>;
}

function imageUrl(value: unknown, path: string): string {
  const allowed = `give an http:// or https:// URL of at most ${LIMITS.urlLength} characters`;
  const url = text(value, path, 1, LIMITS.urlLength, allowed);
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    refuse(path, value, allowed);
  }
  // The text itself must start so, not only what URL makes of it: the launch tells a URL from a file by that prefix (hypervisor/instance/spec.ts, isImageUrl).
  if (!/^https?:\/\/[^/\\]/i.test(url) || (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') || parsed.hostname === '' || /\s/.test(url)) refuse(path, value, allowed);
  return url;
}

function checksum(value: unknown, path: string, urlPath: string): string {
  if (!present(value)) throw new Refusal(`${path} is missing: ${urlPath} always comes with its checksum, sha256: and 64 lowercase hex digits (as sha256sum prints them).`);
  if (typeof value !== 'string' || !SHA256.test(value)) refuse(path, value, 'give sha256: and 64 lowercase hex digits (as sha256sum prints them)');
  return value;
}

/** A file name in the compute host's `[compute] image_dir`: never a path, so a message cannot make the host read any other file. */
function imageName(value: unknown, path: string): string {
  const allowed = `give the name of a file in the compute host's [compute] image_dir (no '/', not '.' or '..', no control characters, at most ${LIMITS.imageNameBytes} bytes), never a path`;
  const name = text(value, path, 1, LIMITS.imageNameBytes, allowed);
  if (name.includes('/') || name === '.' || name === '..' || Buffer.byteLength(name, 'utf8') > LIMITS.imageNameBytes) refuse(path, value, allowed);
  return name;
}

/** The shared part of an image and of a kernel or ramdisk: {url, checksum} or {name}, or neither (null). */
function source(fields: Record<string, unknown>, path: string, what: string): ImageSource | null {
  const hasUrl = present(fields.url);
  const hasName = present(fields.name);
  if (hasUrl && hasName) throw new Refusal(`${path} has both url and name: give exactly one, url (with checksum) or name.`);
  if (hasUrl) return { url: imageUrl(fields.url, `${path}.url`), checksum: checksum(fields.checksum, `${path}.checksum`, `${path}.url`) };
  if (present(fields.checksum)) throw new Refusal(`${path}.checksum is given without ${path}.url: a checksum goes with a url only (a name is a file the host already has); drop it or give the url.`);
  if (hasName) return { name: imageName(fields.name, `${path}.name`) };
  if (what !== '') throw new Refusal(`${path} is an object with neither url nor name: give ${what} as {"url", "checksum"} or {"name"}.`);
  return null;
}

function kernelSource(value: unknown, path: string, what: string): ImageSource {
  const fields = object(value, path, `give the ${what} as {"url", "checksum"} or {"name"}`);
  return source(fields, path, `the ${what}`) as ImageSource;
}

function imageProperties(value: unknown, path: string): Record<string, string> {
  const props = stringMap(value, path);
  // As hypervisor/instance/spec.ts checks them, from the same definitions.
  if (props.hw_architecture !== undefined && !ARCHITECTURE_NAME.test(props.hw_architecture)) {
    refuse(`${path}.hw_architecture`, props.hw_architecture, 'give an architecture name of lowercase letters, digits and _, such as x86_64 or aarch64');
  }
  if (props.img_hv_type !== undefined && !(IMAGE_HV_TYPES as readonly string[]).includes(props.img_hv_type)) {
    refuse(`${path}.img_hv_type`, props.img_hv_type, `give one of ${IMAGE_HV_TYPES.join(', ')} (novalet runs those), or leave it out`);
  }
  if (props.hw_machine_type !== undefined && !MACHINE_TYPE_NAME.test(props.hw_machine_type)) {
    refuse(`${path}.hw_machine_type`, props.hw_machine_type, 'give a machine type name of letters, digits, ., _ and -, such as pc, q35 or virt');
  }
  return props;
}

function image(value: unknown, path: string): WireImage {
  const fields = object(value, path, 'give an object: {"url", "checksum"}, {"name"} or {"kernel", "ramdisk"?, "cmdline"?}, with "properties"');
  const properties = imageProperties(fields.properties, `${path}.properties`);
  const disk = source(fields, path, '');
  const kernelBoot = present(fields.kernel);
  if (disk && kernelBoot) {
    throw new Refusal(`${path} has both a disk (${present(fields.url) ? 'url' : 'name'}) and a kernel: give exactly one, a disk image or a direct kernel boot.`);
  }
  if (disk) {
    for (const field of ['ramdisk', 'cmdline'] as const) {
      if (present(fields[field])) throw new Refusal(`${path}.${field} is given without ${path}.kernel: a ${field} belongs to a direct kernel boot; drop it or give the kernel instead of the disk.`);
    }
    return { ...disk, properties };
  }
  if (!kernelBoot) {
    for (const field of ['ramdisk', 'cmdline'] as const) {
      if (present(fields[field])) throw new Refusal(`${path}.${field} is given without ${path}.kernel: a ${field} belongs to a direct kernel boot; give the kernel too.`);
    }
    throw new Refusal(`${path} has nothing to boot: give url with checksum, or name, or kernel (with optional ramdisk and cmdline).`);
  }
  const out: WireImage = { kernel: kernelSource(fields.kernel, `${path}.kernel`, 'kernel'), properties };
  if (present(fields.ramdisk)) out.ramdisk = kernelSource(fields.ramdisk, `${path}.ramdisk`, 'ramdisk');
  if (present(fields.cmdline)) {
    out.cmdline = text(fields.cmdline, `${path}.cmdline`, 0, LIMITS.cmdlineLength, `give a kernel command line of at most ${LIMITS.cmdlineLength} characters without control characters`);
  }
  return out;
}

function flavor(value: unknown, path: string): WireFlavor {
  const fields = object(value, path, 'give an object {"name", "vcpus", "memory_mb", "root_gb", "extra_specs"}');
  return {
    name: text(fields.name, `${path}.name`, 1, MAX_NAME_LENGTH, `give the flavor's name, 1 to ${MAX_NAME_LENGTH} characters without control characters`),
    vcpus: wholeNumber(fields.vcpus, `${path}.vcpus`, 1, MAX_VCPUS),
    memory_mb: wholeNumber(fields.memory_mb, `${path}.memory_mb`, MIN_MEMORY_MIB, MAX_MEMORY_MIB),
    root_gb: wholeNumber(fields.root_gb, `${path}.root_gb`, 0, MAX_ROOT_GB),
    extra_specs: stringMap(fields.extra_specs, `${path}.extra_specs`),
  };
}

/** The `instance` object of build, boot and reschedule. */
export function validateWireInstance(value: unknown, path = 'body.instance'): Checked<WireInstance> {
  return checking(() => wireInstance(value, path));
}

function wireInstance(value: unknown, path: string): WireInstance {
  const fields = object(value, path, 'give an object {"uuid", "name", "flavor", "image"}');
  return {
    uuid: uuid(fields.uuid, `${path}.uuid`),
    name: text(fields.name, `${path}.name`, 1, MAX_NAME_LENGTH, `give the instance's name, 1 to ${MAX_NAME_LENGTH} characters without control characters`),
    flavor: flavor(fields.flavor, `${path}.flavor`),
    image: image(fields.image, `${path}.image`),
  };
}

function faultText(value: unknown, path: string, min: number): string {
  return text(value, path, min, LIMITS.faultFieldLength, `give a string of ${min} to ${LIMITS.faultFieldLength} characters`, 'allowed');
}

function placement(value: unknown, path: string): PlacementRequest {
  const fields = object(value, path, 'give an object {"attempt", "max_attempts", "alternates", "faults"}, or leave it out for a direct build');
  const maxAttempts = wholeNumber(fields.max_attempts, `${path}.max_attempts`, 1, LIMITS.maxAttempts);
  const attempt = wholeNumber(fields.attempt, `${path}.attempt`, 1, maxAttempts, `${path}.max_attempts (${maxAttempts})`);
  const alternatesPath = `${path}.alternates`;
  const alternates = present(fields.alternates) ? fields.alternates : [];
  if (!Array.isArray(alternates) || alternates.length > LIMITS.alternates) refuse(alternatesPath, alternates, `give an array of at most ${LIMITS.alternates} host names`);
  const faultsPath = `${path}.faults`;
  const faults = present(fields.faults) ? fields.faults : [];
  if (!Array.isArray(faults) || faults.length > LIMITS.faults) refuse(faultsPath, faults, `give an array of at most ${LIMITS.faults} faults`);
  return {
    attempt,
    max_attempts: maxAttempts,
    alternates: alternates.map((host: unknown, i) => hostName(host, `${alternatesPath}[${i}]`)),
    faults: faults.map((fault: unknown, i) => {
      const at = `${faultsPath}[${i}]`;
      const f = object(fault, at, 'give an object {"host", "code", "message", "remedy"}');
      return { host: hostName(f.host, `${at}.host`), code: faultText(f.code, `${at}.code`, 1), message: faultText(f.message, `${at}.message`, 0), remedy: faultText(f.remedy, `${at}.remedy`, 0) };
    }),
  };
}

function buildBody(body: unknown, path: string): BuildBody {
  const fields = object(body, path, 'give an object {"instance", "request"?}');
  const out: BuildBody = { instance: wireInstance(fields.instance, `${path}.instance`) };
  if (present(fields.request)) out.request = placement(fields.request, `${path}.request`);
  return out;
}

function checking<T>(check: () => T): Checked<T> {
  try {
    return { ok: true, value: check() };
  } catch (err) {
    if (err instanceof Refusal) return refused('BODY_INVALID', err.reason);
    throw err;
  }
}

/** A build's body (also a reschedule's, and the instance of a boot): checked whole, unknown fields dropped, UUIDs in lower case, maps defaulted to {}. */
export function validateBuildBody(body: unknown, path = 'body'): Checked<BuildBody> {
  return checking(() => buildBody(body, path));
}

function uuidBody(body: Record<string, unknown>): { uuid: string } {
  return { uuid: uuid(body.uuid, 'body.uuid') };
}

function computeRequest(kind: ComputeRequestKind, body: Record<string, unknown>): ComputeRequest {
  switch (kind) {
    case 'build':
      return { kind, body: buildBody(body, 'body') };
    case 'delete':
    case 'stop':
    case 'start':
    case 'show':
      return { kind, body: uuidBody(body) };
    case 'reboot': {
      const { uuid: id } = uuidBody(body);
      if (body.type !== 'SOFT' && body.type !== 'HARD') refuse('body.type', body.type, 'give "SOFT" (the guest is asked, ACPI) or "HARD" (power-cycled)');
      return { kind, body: { uuid: id, type: body.type } };
    }
    case 'list':
      return { kind, body: {} };
    case 'console': {
      const { uuid: id } = uuidBody(body);
      const lines = present(body.lines) ? wholeNumber(body.lines, 'body.lines', 1, CONSOLE_MAX_LINES) : CONSOLE_DEFAULT_LINES;
      return { kind, body: { uuid: id, lines } };
    }
  }
}

/** A decoded envelope on `compute.<host>` as one of the requests, or why not: KIND_UNKNOWN, or BODY_INVALID with the field's path. */
export function validateComputeRequest(envelope: Envelope): Checked<ComputeRequest> {
  const kind = envelope.kind;
  if (!(COMPUTE_KINDS as readonly string[]).includes(kind)) {
    return refused('KIND_UNKNOWN', `kind is ${describeValue(kind)}: a compute host takes ${COMPUTE_KINDS.join(', ')}.`);
  }
  if (!isObject(envelope.body)) {
    return refused('BODY_INVALID', `body is ${describeValue(envelope.body)}: give a JSON object ({} for a request that takes no field).`);
  }
  const body = envelope.body;
  return checking(() => computeRequest(kind as ComputeRequestKind, body));
}

/** At most `max` UTF-16 units of `text`, never cutting a surrogate pair in two. */
function clip(text: string, max: number): string {
  if (text.length <= max) return text;
  const end = /[\ud800-\udbff]/.test(text[max - 1] ?? '') ? max - 1 : max;
  return text.slice(0, end);
}

/**
 * What a compute host sends to `scheduler` as `reschedule` when a placed
 * build failed or did not fit: the build it received, with its fault
 * appended to `request.faults` (a copy; `attempt` is the scheduler's to
 * count). The fault is clipped to the contract's limits, and only the last
 * LIMITS.faults faults are kept, so the result always passes
 * validateBuildBody. A direct build (no `request`) is not rescheduled.
 */
export function rescheduleBody(build: BuildBody, fault: HostFault): BuildBody {
  if (!build.request) throw new Error('rescheduleBody: a direct build (without request) is not rescheduled; publish create.error only.');
  const clipped: HostFault = {
    host: fault.host,
    code: clip(fault.code, LIMITS.faultFieldLength) || 'INTERNAL',
    message: clip(fault.message, LIMITS.faultFieldLength),
    remedy: clip(fault.remedy, LIMITS.faultFieldLength),
  };
  const faults = [...build.request.faults.map((f) => ({ ...f })), clipped].slice(-LIMITS.faults);
  return { instance: structuredClone(build.instance), request: { ...build.request, alternates: [...build.request.alternates], faults } };
}
