/**
 * KvmIoctls that replay what another host's /dev/kvm answered, from a
 * `kvm-ioctl.json` at the root of a captured host tree (test fixtures, or a
 * tree copied from a field host for diagnosis). Format, every field optional:
 *
 *   {
 *     "description": "what host this is",
 *     "openErrno": null | "EACCES",          // open(O_RDWR) failed with this
 *     "apiVersion": 12,                       // KVM_GET_API_VERSION answer …
 *     "apiVersionErrno": null | "ENOTTY",     // … or its errno
 *     "createVmErrno": null | "ENOMEM",       // KVM_CREATE_VM failed with this
 *     "extensions": { "KVM_CAP_NR_VCPUS": 4, "KVM_CAP_MAX_VCPUS": 1024,
 *                     "KVM_CAP_MAX_VCPU_ID": 4096, "KVM_CAP_NR_MEMSLOTS": 32764 }
 *   }
 *
 * Defaults are a healthy device (API 12, VM created); a capability not
 * listed answers 0, as the kernel does for one it does not know. Fds handed
 * out are fake numbers; openFds() tells which are still open.
 */
import { readFile } from 'node:fs/promises';
import { NovaletError } from '../../config/novalet-error.js';
import {
  KVM_CAP_MAX_VCPU_ID,
  KVM_CAP_MAX_VCPUS,
  KVM_CAP_NR_MEMSLOTS,
  KVM_CAP_NR_VCPUS,
  KVM_CHECK_EXTENSION,
  KVM_CREATE_VM,
  KVM_GET_API_VERSION,
  KVM_STABLE_API_VERSION,
  type IoctlOutcome,
  type KvmIoctls,
} from './kvm-ioctls.js';

export interface KvmIoctlRecording {
  openErrno: string | null;
  apiVersion: number | null;
  apiVersionErrno: string | null;
  createVmErrno: string | null;
  /** Capability number → answer. */
  extensions: Map<number, number>;
}

const CAPABILITY_NUMBERS: Record<string, number> = {
  KVM_CAP_NR_VCPUS,
  KVM_CAP_NR_MEMSLOTS,
  KVM_CAP_MAX_VCPUS,
  KVM_CAP_MAX_VCPU_ID,
};

function invalid(source: string, what: string): NovaletError {
  return new NovaletError(
    'KVM_IOCTL_RECORDING_INVALID',
    `${source}: ${what}.`,
    'Fix the recording: see hypervisor/host/recorded-kvm-ioctls.ts for its format.',
  );
}

function errnoField(source: string, data: Record<string, unknown>, key: string): string | null {
  const value = data[key];
  if (value === undefined || value === null) return null;
  if (typeof value !== 'string' || !/^E[A-Z0-9]+$/.test(value)) throw invalid(source, `${key} must be an errno name such as "EACCES" or null`);
  return value;
}

export function parseKvmIoctlRecording(text: string, source = 'kvm-ioctl.json'): KvmIoctlRecording {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (error) {
    throw invalid(source, `not JSON (${(error as Error).message})`);
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data)) throw invalid(source, 'not a JSON object');
  const record = data as Record<string, unknown>;

  const apiVersionErrno = errnoField(source, record, 'apiVersionErrno');
  let apiVersion: number | null = apiVersionErrno === null ? KVM_STABLE_API_VERSION : null;
  if (record.apiVersion !== undefined && record.apiVersion !== null) {
    if (!Number.isInteger(record.apiVersion) || (record.apiVersion as number) < 0) throw invalid(source, 'apiVersion must be a non-negative integer');
    if (apiVersionErrno !== null) throw invalid(source, 'apiVersion and apiVersionErrno cannot both be set');
    apiVersion = record.apiVersion as number;
  }

  const extensions = new Map<number, number>();
  const rawExtensions = record.extensions ?? {};
  if (typeof rawExtensions !== 'object' || rawExtensions === null || Array.isArray(rawExtensions)) throw invalid(source, 'extensions must be an object');
  for (const [name, value] of Object.entries(rawExtensions)) {
    const capability = CAPABILITY_NUMBERS[name] ?? (/^\d+$/.test(name) ? Number(name) : undefined);
    if (capability === undefined) throw invalid(source, `unknown capability ${name} in extensions`);
    if (!Number.isInteger(value) || (value as number) < 0) throw invalid(source, `extensions.${name} must be a non-negative integer`);
    extensions.set(capability, value as number);
  }

  return {
    openErrno: errnoField(source, record, 'openErrno'),
    apiVersion,
    apiVersionErrno,
    createVmErrno: errnoField(source, record, 'createVmErrno'),
    extensions,
  };
}

export class RecordedKvmIoctls implements KvmIoctls {
  private nextFd = 1000;
  readonly standsInForCharDevice = true;
  private readonly systemFds = new Set<number>();
  private readonly vmFds = new Set<number>();

  constructor(readonly recording: KvmIoctlRecording) {}

  /** Fds handed out and not closed yet. */
  openFds(): number[] {
    return [...this.systemFds, ...this.vmFds];
  }

  open(_path: string): IoctlOutcome {
    if (this.recording.openErrno !== null) return { ok: false, errno: this.recording.openErrno };
    const fd = this.nextFd++;
    this.systemFds.add(fd);
    return { ok: true, value: fd };
  }

  ioctl(fd: number, request: number, arg?: number): IoctlOutcome {
    if (!this.systemFds.has(fd)) return { ok: false, errno: this.vmFds.has(fd) ? 'ENOTTY' : 'EBADF' };
    switch (request) {
      case KVM_GET_API_VERSION:
        return this.recording.apiVersion === null
          ? { ok: false, errno: this.recording.apiVersionErrno ?? 'ENOTTY' }
          : { ok: true, value: this.recording.apiVersion };
      case KVM_CREATE_VM: {
        if (this.recording.createVmErrno !== null) return { ok: false, errno: this.recording.createVmErrno };
        const vmFd = this.nextFd++;
        this.vmFds.add(vmFd);
        return { ok: true, value: vmFd };
      }
      case KVM_CHECK_EXTENSION:
        return { ok: true, value: this.recording.extensions.get(arg ?? -1) ?? 0 };
      default:
        return { ok: false, errno: 'ENOTTY' };
    }
  }

  close(fd: number): void {
    this.systemFds.delete(fd);
    this.vmFds.delete(fd);
  }
}

/** The recording at `file`, or null when there is none. */
export async function loadRecordedKvmIoctls(file: string): Promise<RecordedKvmIoctls | null> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
  return new RecordedKvmIoctls(parseKvmIoctlRecording(text, file));
}
