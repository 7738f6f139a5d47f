/** The /dev/kvm interrogation through KvmIoctls, with recorded answers and with failures. */
import { describe, expect, it } from 'vitest';
import { NovaletError } from '../../config/novalet-error.js';
import { interrogateKvmDevice, probeKvmDevice } from '../../hypervisor/host/kvm-device.js';
import { KVM_CREATE_VM, KVM_GET_API_VERSION, type IoctlOutcome, type KvmIoctls } from '../../hypervisor/host/kvm-ioctls.js';
import { parseKvmIoctlRecording, RecordedKvmIoctls } from '../../hypervisor/host/recorded-kvm-ioctls.js';

function recorded(json: object): RecordedKvmIoctls {
  return new RecordedKvmIoctls(parseKvmIoctlRecording(JSON.stringify(json)));
}

describe('parseKvmIoctlRecording', () => {
  it('defaults to a healthy device and maps capability names to numbers', () => {
    const recording = parseKvmIoctlRecording('{"extensions": {"KVM_CAP_NR_VCPUS": 8, "66": 1024}}');
    expect(recording).toMatchObject({ openErrno: null, apiVersion: 12, apiVersionErrno: null, createVmErrno: null });
    expect(recording.extensions).toEqual(
      new Map([
        [9, 8],
        [66, 1024],
      ]),
    );
  });

  it('rejects what it cannot replay, as a NovaletError naming the file', () => {
    for (const bad of ['not json', '[]', '{"openErrno": 13}', '{"apiVersion": -1}', '{"extensions": {"KVM_CAP_FOO": 1}}', '{"apiVersion": 12, "apiVersionErrno": "ENOTTY"}']) {
      expect(() => parseKvmIoctlRecording(bad, 'host/kvm-ioctl.json'), bad).toThrow(NovaletError);
    }
    try {
      parseKvmIoctlRecording('{"openErrno": 13}', 'host/kvm-ioctl.json');
    } catch (error) {
      expect((error as NovaletError).code).toBe('KVM_IOCTL_RECORDING_INVALID');
      expect((error as NovaletError).message).toContain('host/kvm-ioctl.json: openErrno must be an errno name');
    }
  });
});

describe('interrogateKvmDevice', () => {
  it('asks API version, creates and closes a VM, reads the four capabilities, closes the device', () => {
    const ioctls = recorded({ extensions: { KVM_CAP_NR_VCPUS: 2, KVM_CAP_MAX_VCPUS: 1024, KVM_CAP_MAX_VCPU_ID: 4096 } });
    const facts = interrogateKvmDevice('/dev/kvm', true, ioctls);
    expect(facts).toEqual({
      path: '/dev/kvm',
      exists: true,
      isCharDevice: true,
      accessible: true,
      openError: null,
      apiVersion: 12,
      apiVersionError: null,
      createVm: { ok: true, error: null },
      // KVM_CAP_NR_MEMSLOTS not recorded: the kernel answers 0 for what it does not know.
      extensions: { nrVcpus: 2, maxVcpus: 1024, maxVcpuId: 4096, nrMemslots: 0 },
    });
    expect(ioctls.openFds()).toEqual([]);
  });

  it('does not try KVM_CREATE_VM when the API is not 12', () => {
    const asked: number[] = [];
    const inner = recorded({ apiVersion: 11 });
    const spying: KvmIoctls = {
      open: (path) => inner.open(path),
      ioctl: (fd, request, arg) => {
        asked.push(request);
        return inner.ioctl(fd, request, arg);
      },
      close: (fd) => inner.close(fd),
    };
    const facts = interrogateKvmDevice('/dev/kvm', true, spying);
    expect(facts.apiVersion).toBe(11);
    expect(facts.createVm).toBeNull();
    expect(asked).toEqual([KVM_GET_API_VERSION]);
    expect(inner.openFds()).toEqual([]);
  });

  it('records a failed KVM_CREATE_VM with its errno', () => {
    const ioctls = recorded({ createVmErrno: 'ENOMEM' });
    expect(interrogateKvmDevice('/dev/kvm', true, ioctls).createVm).toEqual({ ok: false, error: 'ENOMEM' });
    expect(ioctls.openFds()).toEqual([]);
  });

  it('records an open failure and asks nothing', () => {
    const ioctls = recorded({ openErrno: 'EPERM' });
    const facts = interrogateKvmDevice('/dev/kvm', true, ioctls);
    expect(facts).toMatchObject({ accessible: false, openError: 'EPERM', apiVersion: null, createVm: null });
  });

  it('closes the device and the VM even when an ioctl throws', () => {
    const inner = recorded({});
    const throwing: KvmIoctls = {
      open: (path) => inner.open(path),
      ioctl: (fd, request, arg): IoctlOutcome => {
        if (request !== KVM_GET_API_VERSION && request !== KVM_CREATE_VM) throw new Error('boom');
        return inner.ioctl(fd, request, arg);
      },
      close: (fd) => inner.close(fd),
    };
    expect(() => interrogateKvmDevice('/dev/kvm', true, throwing)).toThrow('boom');
    expect(inner.openFds()).toEqual([]);
  });
});

describe('probeKvmDevice', () => {
  it('reports a missing node without opening anything', async () => {
    const ioctls = recorded({});
    const facts = await probeKvmDevice('/nonexistent/dev/kvm', ioctls);
    expect(facts).toMatchObject({ exists: false, isCharDevice: false, accessible: false, openError: null, apiVersion: null, createVm: null });
    expect(facts.extensions).toEqual({ nrVcpus: null, maxVcpus: null, maxVcpuId: null, nrMemslots: null });
  });
});
