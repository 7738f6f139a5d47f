/**
 * Probing the KVM device node: does it exist, is it a character device, can
 * this process open it read-write, does it speak the stable API (12), will it
 * create a VM, and what do four capabilities say. Every fd opened here is
 * closed again before returning, whatever happens in between.
 */
import { stat } from 'node:fs/promises';
import type { KvmDeviceFacts, KvmExtensions } from './facts.js';
import {
  KVM_CAP_MAX_VCPU_ID,
  KVM_CAP_MAX_VCPUS,
  KVM_CAP_NR_MEMSLOTS,
  KVM_CAP_NR_VCPUS,
  KVM_CHECK_EXTENSION,
  KVM_CREATE_VM,
  KVM_GET_API_VERSION,
  KVM_STABLE_API_VERSION,
  type KvmIoctls,
} from './kvm-ioctls.js';

const NO_EXTENSIONS: KvmExtensions = { nrVcpus: null, maxVcpus: null, maxVcpuId: null, nrMemslots: null };

function unopened(path: string, exists: boolean, isCharDevice: boolean, openError: string | null): KvmDeviceFacts {
  return {
    path,
    exists,
    isCharDevice,
    accessible: false,
    openError,
    apiVersion: null,
    apiVersionError: null,
    createVm: null,
    extensions: { ...NO_EXTENSIONS },
  };
}

function checkExtension(ioctls: KvmIoctls, fd: number, capability: number): number | null {
  const answer = ioctls.ioctl(fd, KVM_CHECK_EXTENSION, capability);
  return answer.ok ? answer.value : null;
}

/**
 * The ioctl half, synchronous: open `path`, ask, close. `isCharDevice` is
 * passed through from the caller's stat.
 */
export function interrogateKvmDevice(path: string, isCharDevice: boolean, ioctls: KvmIoctls): KvmDeviceFacts {
  const opened = ioctls.open(path);
  if (!opened.ok) return unopened(path, true, isCharDevice, opened.errno);
  const fd = opened.value;
  try {
    const facts: KvmDeviceFacts = { ...unopened(path, true, isCharDevice, null), accessible: true };
    const api = ioctls.ioctl(fd, KVM_GET_API_VERSION);
    if (!api.ok) return { ...facts, apiVersionError: api.errno };
    facts.apiVersion = api.value;
    if (api.value !== KVM_STABLE_API_VERSION) return facts;

    const vm = ioctls.ioctl(fd, KVM_CREATE_VM, 0);
    if (vm.ok) {
      ioctls.close(vm.value);
      facts.createVm = { ok: true, error: null };
    } else {
      facts.createVm = { ok: false, error: vm.errno };
    }
    facts.extensions = {
      nrVcpus: checkExtension(ioctls, fd, KVM_CAP_NR_VCPUS),
      maxVcpus: checkExtension(ioctls, fd, KVM_CAP_MAX_VCPUS),
      maxVcpuId: checkExtension(ioctls, fd, KVM_CAP_MAX_VCPU_ID),
      nrMemslots: checkExtension(ioctls, fd, KVM_CAP_NR_MEMSLOTS),
    };
    return facts;
  } finally {
    ioctls.close(fd);
  }
}

async function statDevice(path: string): Promise<{ isCharDevice: boolean } | { errno: string }> {
  try {
    return { isCharDevice: (await stat(path)).isCharacterDevice() };
  } catch (error) {
    return { errno: (error as NodeJS.ErrnoException).code ?? 'EIO' };
  }
}

/** Probe the KVM device at `path` (`<root>/dev/kvm`). */
export async function probeKvmDevice(path: string, ioctls: KvmIoctls | Promise<KvmIoctls>): Promise<KvmDeviceFacts> {
  const [status, answering] = await Promise.all([statDevice(path), ioctls]);
  if ('errno' in status) {
    if (status.errno === 'ENOENT' || status.errno === 'ENOTDIR') return unopened(path, false, false, null);
    // Cannot even look (EACCES on a parent directory): it may exist; say why it is out of reach.
    return unopened(path, true, false, status.errno);
  }
  return interrogateKvmDevice(path, status.isCharDevice || answering.standsInForCharDevice === true, answering);
}

/**
 * The device answers as KVM at the ioctl level: the stable API and a VM
 * created. Only then is there a KVM to trust, to test or to report on.
 */
export function kvmDeviceAnswers(device: KvmDeviceFacts): boolean {
  return device.apiVersion === KVM_STABLE_API_VERSION && device.createVm?.ok === true;
}
