import { describe, expect, it } from 'vitest';
import { InstanceSpecError, validateInstanceSpec, type InstanceSpec } from '../../hypervisor/instance/spec.js';

const OK: InstanceSpec = { name: 'web-1', vcpus: 1, memoryMiB: 256, kernel: '/boot/vmlinuz' };

function refusal(spec: InstanceSpec): InstanceSpecError {
  try {
    validateInstanceSpec(spec);
  } catch (err) {
    expect(err).toBeInstanceOf(InstanceSpecError);
    return err as InstanceSpecError;
  }
  throw new Error('the spec was accepted');
}

describe('instance spec validation', () => {
  it('accepts a sensible spec and gives it a UUID', () => {
    const valid = validateInstanceSpec(OK);
    expect(valid.uuid).toMatch(/^[0-9a-f-]{36}$/);
    expect(valid.imageProperties).toEqual({});
  });

  it('accepts names with markup characters: they are escaped later, not refused', () => {
    expect(validateInstanceSpec({ ...OK, name: `<a & "b" ]]>` }).name).toBe(`<a & "b" ]]>`);
  });

  it.each([
    [{ ...OK, memoryMiB: 0 }, 'memoryMiB', 'memory = 0 MiB is not allowed: give a whole number of MiB from 16 to 4194304.'],
    [{ ...OK, memoryMiB: 1e12 }, 'memoryMiB', 'memory = 1000000000000 MiB is not allowed'],
    [{ ...OK, memoryMiB: 12.5 }, 'memoryMiB', 'memory = 12.5 MiB is not allowed'],
    [{ ...OK, vcpus: 0 }, 'vcpus', 'vCPUs = 0 is not allowed: give a whole number from 1 to 4096.'],
    [{ ...OK, vcpus: 100000 }, 'vcpus', 'vCPUs = 100000 is not allowed'],
    [{ ...OK, name: '' }, 'name', 'The instance name must be 1 to 255 characters long.'],
    [{ ...OK, name: 'a\nb' }, 'name', 'The instance name contains a control character.'],
    [{ ...OK, uuid: 'nope' }, 'uuid', "The instance UUID 'nope' is not a UUID."],
    [{ name: 'x', vcpus: 1, memoryMiB: 64 }, 'image', 'The instance has nothing to boot'],
    [{ name: 'x', vcpus: 1, memoryMiB: 64, image: { source: '/i' }, ramdisk: '/r' }, 'kernel', 'A ramdisk or kernel command line was given without a kernel.'],
    [{ ...OK, kernel: undefined, image: { source: 'https://example.test/i.qcow2' } }, 'checksum', 'has no checksum'],
    [{ ...OK, kernel: undefined, image: { source: '/i', checksum: 'md5:abc' } }, 'checksum', "is not of the form sha256:<64 hex digits>"],
    [{ ...OK, imageProperties: { img_hv_type: 'xen' } }, 'img_hv_type', "img_hv_type = 'xen' cannot run here"],
    [{ ...OK, imageProperties: { hw_architecture: 'x86 64' } }, 'hw_architecture', 'is not an architecture name'],
  ] as const)('refuses %j', (spec, field, words) => {
    const err = refusal(spec as InstanceSpec);
    expect(err.field).toBe(field);
    expect(err.code).toBe('INSTANCE_SPEC_INVALID');
    expect(err.message).toContain(words);
  });
});

describe('kernel and ramdisk files', () => {
  it('a directory or a device is refused, naming the field and the option', () => {
    for (const [spec, field, words] of [
      [{ ...OK, kernel: '/tmp' }, 'kernel', 'The kernel /tmp is a directory. Give the path of a kernel image file (novalet run --kernel FILE).'],
      [{ ...OK, ramdisk: '/dev/null' }, 'ramdisk', 'The ramdisk /dev/null is not a regular file (a device, pipe or socket).'],
    ] as const) {
      let err: unknown;
      try {
        validateInstanceSpec(spec);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(InstanceSpecError);
      expect((err as InstanceSpecError).field).toBe(field);
      expect((err as Error).message).toContain(words);
    }
    // A path that is not there yet is the launch's to report.
    expect(() => validateInstanceSpec({ ...OK, kernel: '/nonexistent/vmlinuz' })).not.toThrow();
  });
});
