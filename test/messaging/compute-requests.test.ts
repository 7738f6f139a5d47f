import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { InstanceSpecError, validateInstanceSpec } from '../../hypervisor/instance/spec.js';
import * as spec from '../../hypervisor/instance/spec.js';
import {
  COMPUTE_CALLS,
  COMPUTE_KINDS,
  CONSOLE_DEFAULT_LINES,
  LIMITS,
  rescheduleBody,
  validateBuildBody,
  validateComputeRequest,
  validateWireInstance,
  type BuildBody,
  type ComputeRequest,
} from '../../messaging/contracts/compute-requests.js';
import { MAX_EXCERPT_LENGTH, MAX_REASON_LENGTH } from '../../messaging/contracts/dead-letter.js';
import type { HostFault } from '../../messaging/contracts/fault.js';
import { isHostName, MAX_HOST_NAME_LENGTH } from '../../messaging/contracts/host-name.js';
import * as limits from '../../messaging/contracts/instance-limits.js';
import { errorReply, okReply, validateReplyBody } from '../../messaging/contracts/reply.js';
import { decodeEnvelope, encodeEnvelope, makeEnvelope, type Checked } from '../../messaging/envelope.js';

const UUID = '0b6c2f1a-8d3e-4f5a-9b7c-1d2e3f4a5b6c';
const SHA = `sha256:${'932fcae93574e242dc3d772d5235061747dfe537668443a1f0567d893614b464'}`;

function urlBuild(): Record<string, any> {
  return {
    instance: {
      uuid: UUID,
      name: 'web-1',
      flavor: { name: 'm1.tiny', vcpus: 1, memory_mb: 256, root_gb: 1, extra_specs: {} },
      image: { url: 'http://images.example/cirros.qcow2', checksum: SHA, properties: { hw_architecture: 'x86_64', img_hv_type: 'qemu', hw_machine_type: 'pc' } },
    },
    request: { attempt: 1, max_attempts: 3, alternates: ['host-b', 'host-c'], faults: [] },
  };
}

/** The build with `change` applied to a copy (a function that edits it). */
function buildWith(change: (body: Record<string, any>) => void): Record<string, any> {
  const body = urlBuild();
  change(body);
  return body;
}

function request(kind: string, body: unknown): Checked<ComputeRequest> {
  return validateComputeRequest(makeEnvelope(kind, body));
}

function refusal<T>(checked: Checked<T>): { code: string; reason: string } {
  if (checked.ok) throw new Error(`expected a refusal, got ${JSON.stringify(checked.value)}`);
  return { code: checked.code, reason: checked.reason };
}

function reasonFor(body: unknown): string {
  const { code, reason } = refusal(request('build', body));
  expect(code).toBe('BODY_INVALID');
  return reason;
}

function accepted(kind: string, body: unknown): ComputeRequest {
  const checked = request(kind, body);
  if (!checked.ok) throw new Error(`expected ${kind} to pass, got ${checked.code}: ${checked.reason}`);
  return checked.value;
}

/** Through the wire and back: encode, decode, check; the same request comes out. */
function roundTrip(kind: string, body: unknown): ComputeRequest {
  const first = accepted(kind, body);
  const content = encodeEnvelope(makeEnvelope(first.kind, first.body));
  const decoded = decodeEnvelope(content, { maxBytes: 1024 * 1024 });
  if (!decoded.ok) throw new Error(decoded.reason);
  const again = validateComputeRequest(decoded.value);
  expect(again).toEqual({ ok: true, value: first });
  return first;
}

describe('a valid build of each image form', () => {
  it('a disk by url and checksum, placed by a scheduler', () => {
    const build = roundTrip('build', urlBuild());
    expect(build).toEqual({ kind: 'build', body: urlBuild() });
  });

  it('a disk by name, direct (no request), maps defaulted to {}', () => {
    const body = { instance: { uuid: UUID, name: 'db-1', flavor: { name: 'm1.small', vcpus: 2, memory_mb: 2048, root_gb: 20 }, image: { name: 'debian-13.qcow2' } } };
    const build = roundTrip('build', body);
    expect(build.body).toEqual({
      instance: { uuid: UUID, name: 'db-1', flavor: { name: 'm1.small', vcpus: 2, memory_mb: 2048, root_gb: 20, extra_specs: {} }, image: { name: 'debian-13.qcow2', properties: {} } },
    });
    expect('request' in build.body).toBe(false);
  });

  it('a kernel by url with a ramdisk by name and a command line; a kernel alone by name', () => {
    const kernelBoot = buildWith((b) => {
      b.instance.flavor.root_gb = 0;
      b.instance.image = { kernel: { url: 'https://images.example/vmlinuz', checksum: SHA }, ramdisk: { name: 'initrd.img' }, cmdline: 'console=ttyS0 root=/dev/ram0', properties: {} };
    });
    expect((roundTrip('build', kernelBoot) as { body: BuildBody }).body.instance.image).toEqual(kernelBoot.instance.image);
    const kernelOnly = buildWith((b) => (b.instance.image = { kernel: { name: 'vmlinuz' } }));
    expect((roundTrip('build', kernelOnly) as { body: BuildBody }).body.instance.image).toEqual({ kernel: { name: 'vmlinuz' }, properties: {} });
  });

  it('takes the limits themselves', () => {
    const body = buildWith((b) => {
      Object.assign(b.instance.flavor, { vcpus: limits.MAX_VCPUS, memory_mb: limits.MAX_MEMORY_MIB, root_gb: limits.MAX_ROOT_GB, name: 'f'.repeat(255) });
      b.instance.name = 'n'.repeat(limits.MAX_NAME_LENGTH);
      b.instance.image = { name: 'é'.repeat(127) + 'x', properties: Object.fromEntries(Array.from({ length: LIMITS.mapKeys }, (_, i) => [`k${i}`, 'v'.repeat(LIMITS.mapValueLength)])) };
      b.request = { attempt: 100, max_attempts: 100, alternates: ['h'.repeat(MAX_HOST_NAME_LENGTH)], faults: [] };
    });
    expect(accepted('build', body).kind).toBe('build');
    const smallest = buildWith((b) => Object.assign(b.instance.flavor, { vcpus: 1, memory_mb: limits.MIN_MEMORY_MIB, root_gb: 0 }));
    expect(accepted('build', smallest).kind).toBe('build');
  });

  it('ignores unknown fields everywhere and drops them; takes null optional fields as absent; gives UUIDs in lower case', () => {
    const body = buildWith((b) => {
      b.future = { x: 1 };
      b.instance.uuid = UUID.toUpperCase();
      b.instance.flavor.swap = 512;
      b.instance.image.disk_format = 'qcow2';
      b.instance.image.cmdline = null;
      b.request.retry_after = 5;
      b.request.faults = null;
    });
    const build = accepted('build', body);
    expect(build.body).toEqual(buildWith((b) => void (b.request.faults = [])));
    expect(accepted('build', buildWith((b) => (b.request = null))).body).toEqual(buildWith((b) => delete b.request));
  });

  it('keeps a __proto__ key of a map as a key, not a prototype', () => {
    const body = JSON.parse(JSON.stringify(urlBuild()).replace('"extra_specs":{}', '"extra_specs":{"__proto__":"x","hw:cpu_policy":"shared"}'));
    const build = accepted('build', body) as { body: BuildBody };
    const specs = build.body.instance.flavor.extra_specs;
    expect(Object.getPrototypeOf(specs)).toBe(Object.prototype);
    expect(Object.keys(specs)).toEqual(['__proto__', 'hw:cpu_policy']);
    expect(({} as Record<string, unknown>).x).toBeUndefined();
  });
});

describe('a build is refused with the path of the field and what is allowed', () => {
  it('gives the reason as the contract shows it', () => {
    expect(reasonFor(buildWith((b) => (b.instance.flavor.vcpus = -1)))).toBe('body.instance.flavor.vcpus is -1: give a whole number from 1 to 4096.');
  });

  const absurd: [string, (b: Record<string, any>) => void, string][] = [
    ['vcpus 0', (b) => (b.instance.flavor.vcpus = 0), 'body.instance.flavor.vcpus is 0: give a whole number from 1 to 4096.'],
    ['vcpus too many', (b) => (b.instance.flavor.vcpus = 4097), 'body.instance.flavor.vcpus is 4097: give a whole number from 1 to 4096.'],
    ['vcpus a fraction', (b) => (b.instance.flavor.vcpus = 1.5), 'body.instance.flavor.vcpus is 1.5: give a whole number from 1 to 4096.'],
    ['vcpus a string', (b) => (b.instance.flavor.vcpus = '1'), "body.instance.flavor.vcpus is the string '1': give a whole number from 1 to 4096."],
    ['vcpus huge', (b) => (b.instance.flavor.vcpus = 1e300), 'body.instance.flavor.vcpus is 1e+300: give a whole number from 1 to 4096.'],
    ['vcpus missing', (b) => delete b.instance.flavor.vcpus, 'body.instance.flavor.vcpus is missing: give a whole number from 1 to 4096.'],
    ['memory too little', (b) => (b.instance.flavor.memory_mb = 15), 'body.instance.flavor.memory_mb is 15: give a whole number from 16 to 4194304.'],
    ['memory negative', (b) => (b.instance.flavor.memory_mb = -256), 'body.instance.flavor.memory_mb is -256: give a whole number from 16 to 4194304.'],
    ['memory too much', (b) => (b.instance.flavor.memory_mb = 4194305), 'body.instance.flavor.memory_mb is 4194305: give a whole number from 16 to 4194304.'],
    ['memory null', (b) => (b.instance.flavor.memory_mb = null), 'body.instance.flavor.memory_mb is null: give a whole number from 16 to 4194304.'],
    ['root_gb negative', (b) => (b.instance.flavor.root_gb = -1), 'body.instance.flavor.root_gb is -1: give a whole number from 0 to 65536.'],
    ['root_gb huge', (b) => (b.instance.flavor.root_gb = 65537), 'body.instance.flavor.root_gb is 65537: give a whole number from 0 to 65536.'],
    ['flavor an array', (b) => (b.instance.flavor = []), 'body.instance.flavor is an array: give an object {"name", "vcpus", "memory_mb", "root_gb", "extra_specs"}.'],
    ['flavor name empty', (b) => (b.instance.flavor.name = ''), "body.instance.flavor.name is the string '': give the flavor's name, 1 to 255 characters without control characters."],
    ['instance missing', (b) => delete b.instance, 'body.instance is missing: give an object {"uuid", "name", "flavor", "image"}.'],
    ['uuid not one', (b) => (b.instance.uuid = 'web-1'), "body.instance.uuid is the string 'web-1': give a UUID such as 0b6c2f1a-8d3e-4f5a-9b7c-1d2e3f4a5b6c."],
    ['name empty', (b) => (b.instance.name = ''), "body.instance.name is the string '': give the instance's name, 1 to 255 characters without control characters."],
    ['name too long', (b) => (b.instance.name = 'n'.repeat(256)), `body.instance.name is the string '${'n'.repeat(37)}...': give the instance's name, 1 to 255 characters without control characters.`],
    ['name with NUL', (b) => (b.instance.name = 'web\u00001'), "body.instance.name is the string 'web\\x001': give the instance's name, 1 to 255 characters without control characters."],
    ['name with newline', (b) => (b.instance.name = 'web\n1'), "body.instance.name is the string 'web\\n1': give the instance's name, 1 to 255 characters without control characters."],
    ['name with lone surrogate', (b) => (b.instance.name = 'web\ud8001'), "body.instance.name is the string 'web\\ud8001': give the instance's name, 1 to 255 characters without control characters."],
    ['extra_specs a list', (b) => (b.instance.flavor.extra_specs = ['a']), 'body.instance.flavor.extra_specs is an array: give an object of at most 256 string values.'],
    ['extra_specs value a number', (b) => (b.instance.flavor.extra_specs = { 'hw:cpu_cores': 2 }), "body.instance.flavor.extra_specs['hw:cpu_cores'] is 2: give a string of at most 4096 characters without NUL."],
    ['extra_specs too many', (b) => (b.instance.flavor.extra_specs = Object.fromEntries(Array.from({ length: 257 }, (_, i) => [`k${i}`, 'v']))), 'body.instance.flavor.extra_specs is an object: give at most 256 keys (it has 257).'],
    ['extra_specs key empty', (b) => (b.instance.flavor.extra_specs = { '': 'v' }), "body.instance.flavor.extra_specs has the key '': give keys of 1 to 255 characters without control characters."],
    ['properties value too long', (b) => (b.instance.image.properties = { os_distro: 'x'.repeat(4097) }), `body.instance.image.properties.os_distro is the string '${'x'.repeat(37)}...': give a string of at most 4096 characters without NUL.`],
    ['hw_architecture', (b) => (b.instance.image.properties.hw_architecture = 'x86-64'), "body.instance.image.properties.hw_architecture is the string 'x86-64': give an architecture name of lowercase letters, digits and _, such as x86_64 or aarch64."],
    ['img_hv_type', (b) => (b.instance.image.properties.img_hv_type = 'xen'), "body.instance.image.properties.img_hv_type is the string 'xen': give one of kvm, qemu (novalet runs those), or leave it out."],
    ['hw_machine_type', (b) => (b.instance.image.properties.hw_machine_type = 'pc q35'), "body.instance.image.properties.hw_machine_type is the string 'pc q35': give a machine type name of letters, digits, ., _ and -, such as pc, q35 or virt."],
  ];
  for (const [what, change, reason] of absurd) {
    it(what, () => expect(reasonFor(buildWith(change))).toBe(reason));
  }

  const NAME_RULE = "give the name of a file in the compute host's [compute] image_dir (no '/', not '.' or '..', no control characters, at most 255 bytes), never a path.";
  it('refuses paths instead of image names, in the image, the kernel and the ramdisk', () => {
    for (const name of ['/etc/passwd', '../x', 'file:///etc/passwd', 'images/cirros.qcow2', '.', '..', '', 'a\u0000b', 'a\nb', 'é'.repeat(128)]) {
      const reason = reasonFor(buildWith((b) => (b.instance.image = { name })));
      expect(reason, name).toMatch(/^body\.instance\.image\.name is the string '.*': /);
      expect(reason.endsWith(NAME_RULE)).toBe(true);
      expect(reasonFor(buildWith((b) => (b.instance.image = { kernel: { name } }))).startsWith('body.instance.image.kernel.name is ')).toBe(true);
      expect(reasonFor(buildWith((b) => (b.instance.image = { kernel: { name: 'vmlinuz' }, ramdisk: { name } }))).startsWith('body.instance.image.ramdisk.name is ')).toBe(true);
    }
    // Not only slashes: a name is a file name; `..x` and `.hidden` are names.
    for (const name of ['..x', '.hidden', 'cirros 0.6.qcow2', 'back\\slash']) expect(accepted('build', buildWith((b) => (b.instance.image = { name }))).kind).toBe('build');
  });

  it('refuses URLs that are not http(s) and URLs without their checksum', () => {
    const URL_RULE = 'give an http:// or https:// URL of at most 4096 characters.';
    for (const url of ['file:///etc/passwd', 'ftp://images.example/x.qcow2', '/etc/passwd', 'http://', 'http:///x', 'http://images example/x', 'javascript:alert(1)', `http://images.example/${'x'.repeat(4096)}`, 'http://images.example/a\nb']) {
      const reason = reasonFor(buildWith((b) => (b.instance.image.url = url)));
      expect(reason.startsWith('body.instance.image.url is the string '), url).toBe(true);
      expect(reason.endsWith(URL_RULE)).toBe(true);
    }
    expect(reasonFor(buildWith((b) => delete b.instance.image.checksum))).toBe(
      'body.instance.image.checksum is missing: body.instance.image.url always comes with its checksum, sha256: and 64 lowercase hex digits (as sha256sum prints them).',
    );
    expect(reasonFor(buildWith((b) => (b.instance.image = { kernel: { url: 'http://images.example/vmlinuz' } })))).toMatch(/^body\.instance\.image\.kernel\.checksum is missing: /);
    for (const checksum of [SHA.toUpperCase(), `sha256:${'A'.repeat(64)}`, `sha256:${'0'.repeat(63)}`, `md5:${'0'.repeat(32)}`, '0'.repeat(64), 42]) {
      expect(reasonFor(buildWith((b) => (b.instance.image.checksum = checksum))), String(checksum)).toMatch(/^body\.instance\.image\.checksum is .*: give sha256: and 64 lowercase hex digits \(as sha256sum prints them\)\.$/);
    }
    expect(accepted('build', buildWith((b) => (b.instance.image.url = 'HTTPS://images.example/x'))).kind).toBe('build');
  });

  it('refuses an image that is not exactly one of a disk or a kernel boot', () => {
    const cases: [unknown, string][] = [
      [{ url: 'http://images.example/x', checksum: SHA, name: 'x' }, 'body.instance.image has both url and name: give exactly one, url (with checksum) or name.'],
      [{ name: 'x', checksum: SHA }, 'body.instance.image.checksum is given without body.instance.image.url: a checksum goes with a url only (a name is a file the host already has); drop it or give the url.'],
      [{ name: 'x', kernel: { name: 'vmlinuz' } }, 'body.instance.image has both a disk (name) and a kernel: give exactly one, a disk image or a direct kernel boot.'],
      [{ url: 'http://images.example/x', checksum: SHA, kernel: { name: 'vmlinuz' } }, 'body.instance.image has both a disk (url) and a kernel: give exactly one, a disk image or a direct kernel boot.'],
      [{ name: 'x', cmdline: 'quiet' }, 'body.instance.image.cmdline is given without body.instance.image.kernel: a cmdline belongs to a direct kernel boot; drop it or give the kernel instead of the disk.'],
      [{ ramdisk: { name: 'initrd' } }, 'body.instance.image.ramdisk is given without body.instance.image.kernel: a ramdisk belongs to a direct kernel boot; give the kernel too.'],
      [{ properties: {} }, 'body.instance.image has nothing to boot: give url with checksum, or name, or kernel (with optional ramdisk and cmdline).'],
      [{ kernel: {} }, 'body.instance.image.kernel is an object with neither url nor name: give the kernel as {"url", "checksum"} or {"name"}.'],
      [{ kernel: '/boot/vmlinuz' }, "body.instance.image.kernel is the string '/boot/vmlinuz': give the kernel as {\"url\", \"checksum\"} or {\"name\"}."],
      [{ kernel: { name: 'vmlinuz' }, cmdline: 'console=ttyS0\u0000' }, "body.instance.image.cmdline is the string 'console=ttyS0\\x00': give a kernel command line of at most 4096 characters without control characters."],
      [{ kernel: { name: 'vmlinuz' }, cmdline: 'a\nb' }, "body.instance.image.cmdline is the string 'a\\nb': give a kernel command line of at most 4096 characters without control characters."],
      ['cirros.qcow2', 'body.instance.image is the string \'cirros.qcow2\': give an object: {"url", "checksum"}, {"name"} or {"kernel", "ramdisk"?, "cmdline"?}, with "properties".'],
    ];
    for (const [image, reason] of cases) expect(reasonFor(buildWith((b) => (b.instance.image = image))), JSON.stringify(image)).toBe(reason);
    expect(reasonFor(buildWith((b) => (b.instance.image = { kernel: { name: 'k' }, cmdline: 'x'.repeat(4097) })))).toMatch(/^body\.instance\.image\.cmdline is the string 'x+\.\.\.': /);
  });

  it('refuses a placement out of its limits', () => {
    const cases: [(r: Record<string, any>) => void, string][] = [
      [(r) => (r.attempt = 0), 'body.request.attempt is 0: give a whole number from 1 to body.request.max_attempts (3).'],
      [(r) => (r.attempt = 4), 'body.request.attempt is 4: give a whole number from 1 to body.request.max_attempts (3).'],
      [(r) => (r.max_attempts = 101), 'body.request.max_attempts is 101: give a whole number from 1 to 100.'],
      [(r) => (r.max_attempts = 0), 'body.request.max_attempts is 0: give a whole number from 1 to 100.'],
      [(r) => (r.alternates = 'host-b'), "body.request.alternates is the string 'host-b': give an array of at most 100 host names."],
      [(r) => (r.alternates = Array.from({ length: 101 }, (_, i) => `h${i}`)), 'body.request.alternates is an array: give an array of at most 100 host names.'],
      [(r) => (r.alternates = ['host-b', 'compute.#']), "body.request.alternates[1] is the string 'compute.#': give a host name of 1 to 239 letters, digits, '.', '_', ':' or '-'."],
      [(r) => (r.alternates = ['*']), "body.request.alternates[0] is the string '*': give a host name of 1 to 239 letters, digits, '.', '_', ':' or '-'."],
      [(r) => (r.alternates = ['h'.repeat(240)]), `body.request.alternates[0] is the string '${'h'.repeat(37)}...': give a host name of 1 to 239 letters, digits, '.', '_', ':' or '-'.`],
      [(r) => (r.faults = {}), 'body.request.faults is an object: give an array of at most 100 faults.'],
      [(r) => (r.faults = [{ code: 'X', message: '', remedy: '' }]), "body.request.faults[0].host is missing: give a host name of 1 to 239 letters, digits, '.', '_', ':' or '-'."],
      [(r) => (r.faults = [{ host: 'a', code: '', message: '', remedy: '' }]), "body.request.faults[0].code is the string '': give a string of 1 to 4096 characters."],
      [(r) => (r.faults = [{ host: 'a', code: 'X', message: 'm'.repeat(4097), remedy: '' }]), `body.request.faults[0].message is the string '${'m'.repeat(37)}...': give a string of 0 to 4096 characters.`],
      [(r) => (r.faults = ['boom']), 'body.request.faults[0] is the string \'boom\': give an object {"host", "code", "message", "remedy"}.'],
    ];
    for (const [change, reason] of cases) expect(reasonFor(buildWith((b) => change(b.request)))).toBe(reason);
    const fault = { host: 'a', code: 'X', message: 'm', remedy: 'r' };
    expect(reasonFor(buildWith((b) => (b.request.faults = Array.from({ length: 101 }, () => fault))))).toBe('body.request.faults is an array: give an array of at most 100 faults.');
    expect(reasonFor(buildWith((b) => (b.request = 'placed')))).toBe(
      'body.request is the string \'placed\': give an object {"attempt", "max_attempts", "alternates", "faults"}, or leave it out for a direct build.',
    );
  });

  it('names the body when it is not an object', () => {
    expect(refusal(validateBuildBody([], 'body'))).toEqual({ code: 'BODY_INVALID', reason: 'body is an array: give an object {"instance", "request"?}.' });
    expect(refusal(validateComputeRequest({ ...makeEnvelope('build', {}), body: null }))).toEqual({
      code: 'BODY_INVALID',
      reason: 'body is null: give a JSON object ({} for a request that takes no field).',
    });
  });
});

describe('reasons never echo more than a short escaped excerpt', () => {
  const PRINTABLE_ASCII = /^[\x20-\x7e]*$/;
  function expectSafe(reason: string, value: string): void {
    expect(reason).toMatch(PRINTABLE_ASCII);
    expect(reason.length).toBeLessThanOrEqual(MAX_REASON_LENGTH);
    // No run of the value longer than the excerpt allows.
    const run = value.slice(0, MAX_EXCERPT_LENGTH + 1);
    expect(reason.includes(run)).toBe(false);
  }

  it('a 10 KB value, in every kind of field', () => {
    const big = 'A'.repeat(10_240);
    const places: ((b: Record<string, any>) => void)[] = [
      (b) => (b.instance.name = big),
      (b) => (b.instance.uuid = big),
      (b) => (b.instance.flavor.vcpus = big),
      (b) => (b.instance.image.url = `http://${big}`),
      (b) => (b.instance.image = { name: big }),
      (b) => (b.instance.flavor.extra_specs = { [big]: 'v' }),
      (b) => (b.instance.flavor.extra_specs = { k: 'v', [`${big}\n`]: 5 }),
      (b) => (b.instance.image.properties = { hw_architecture: big }),
      (b) => (b.request.alternates = [big]),
    ];
    for (const place of places) {
      const reason = reasonFor(buildWith(place));
      expectSafe(reason, big);
      expect(reason.length).toBeLessThan(400);
    }
    const kind = refusal(request('k'.repeat(60), {}));
    expect(kind.code).toBe('KIND_UNKNOWN');
    expectSafe(kind.reason, 'k'.repeat(60));
  });

  it('a value of newlines, control characters and terminal escapes is shown escaped', () => {
    const nasty = 'ok\r\nx-novalet-error: FORGED\u0000\u001b[2J\u2028';
    const reason = reasonFor(buildWith((b) => (b.instance.name = nasty)));
    expect(reason).toBe("body.instance.name is the string 'ok\\r\\nx-novalet-error: FORGED\\x00\\x1b...': give the instance's name, 1 to 255 characters without control characters.");
    expectSafe(reason, nasty);
    const keyed = reasonFor(buildWith((b) => (b.instance.flavor.extra_specs = { [nasty]: 'v' })));
    expect(keyed).toMatch(PRINTABLE_ASCII);
    expect(keyed).toMatch(/^body\.instance\.flavor\.extra_specs has the key 'ok\\r\\nx-novalet/);
  });
});

describe('the other requests', () => {
  it('delete, stop, start and show take a UUID, in lower case', () => {
    for (const kind of ['delete', 'stop', 'start', 'show'] as const) {
      expect(roundTrip(kind, { uuid: UUID.toUpperCase(), ignored: true })).toEqual({ kind, body: { uuid: UUID } });
      expect(refusal(request(kind, {}))).toEqual({ code: 'BODY_INVALID', reason: 'body.uuid is missing: give a UUID such as 0b6c2f1a-8d3e-4f5a-9b7c-1d2e3f4a5b6c.' });
      expect(refusal(request(kind, { uuid: '../../etc' })).code).toBe('BODY_INVALID');
    }
  });

  it('reboot takes exactly SOFT or HARD, required', () => {
    expect(roundTrip('reboot', { uuid: UUID, type: 'HARD' })).toEqual({ kind: 'reboot', body: { uuid: UUID, type: 'HARD' } });
    expect(roundTrip('reboot', { uuid: UUID, type: 'SOFT' }).body).toEqual({ uuid: UUID, type: 'SOFT' });
    for (const type of [undefined, 'soft', 'Hard', 'COLD', 1]) {
      expect(refusal(request('reboot', { uuid: UUID, type })).reason, String(type)).toMatch(/^body\.type is .*: give "SOFT" \(the guest is asked, ACPI\) or "HARD" \(power-cycled\)\.$/);
    }
  });

  it('list takes {} and ignores what else it is given', () => {
    expect(roundTrip('list', {})).toEqual({ kind: 'list', body: {} });
    expect(accepted('list', { all: true })).toEqual({ kind: 'list', body: {} });
  });

  it('console defaults lines to 100 and takes 1 to 10000', () => {
    expect(roundTrip('console', { uuid: UUID })).toEqual({ kind: 'console', body: { uuid: UUID, lines: CONSOLE_DEFAULT_LINES } });
    expect(accepted('console', { uuid: UUID, lines: null }).body).toEqual({ uuid: UUID, lines: 100 });
    expect(accepted('console', { uuid: UUID, lines: 10000 }).body).toEqual({ uuid: UUID, lines: 10000 });
    expect(accepted('console', { uuid: UUID, lines: 1 }).body).toEqual({ uuid: UUID, lines: 1 });
    for (const lines of [0, -5, 10001, 2.5, '50']) {
      expect(refusal(request('console', { uuid: UUID, lines })).reason, String(lines)).toMatch(/^body\.lines is .*: give a whole number from 1 to 10000\.$/);
    }
  });

  it('an unknown kind is KIND_UNKNOWN, naming what a compute host takes', () => {
    for (const kind of ['resize', 'reply', 'boot', 'BUILD', 'reschedule']) {
      expect(refusal(request(kind, {})), kind).toEqual({
        code: 'KIND_UNKNOWN',
        reason: `kind is the string '${kind}': a compute host takes build, delete, reboot, stop, start, show, list, console.`,
      });
    }
  });

  it('says which requests are calls', () => {
    expect([...COMPUTE_CALLS].sort()).toEqual(['console', 'list', 'show']);
    expect(COMPUTE_CALLS.every((kind) => COMPUTE_KINDS.includes(kind))).toBe(true);
  });
});

describe('validateBuildBody and validateWireInstance, for the schedulers', () => {
  it('take a path to name fields by', () => {
    expect(refusal(validateBuildBody(buildWith((b) => (b.instance.flavor.vcpus = 0)), 'body')).reason).toMatch(/^body\.instance\.flavor\.vcpus is 0/);
    expect(refusal(validateWireInstance({ ...urlBuild().instance, name: '' }, 'body.instance')).reason).toMatch(/^body\.instance\.name is/);
    const valid = validateWireInstance(urlBuild().instance);
    expect(valid).toEqual({ ok: true, value: urlBuild().instance });
  });
});

describe('rescheduleBody', () => {
  const fault: HostFault = { host: 'compute-1', code: 'IMAGE_CHECKSUM_MISMATCH', message: 'The image has another SHA-256.', remedy: 'Give its real checksum.' };

  function placed(): BuildBody {
    const checked = validateBuildBody(urlBuild());
    if (!checked.ok) throw new Error(checked.reason);
    return checked.value;
  }

  it('appends the fault to a copy, attempt unchanged, and the result passes the check', () => {
    const build = placed();
    const before = structuredClone(build);
    const next = rescheduleBody(build, fault);
    expect(next.request).toEqual({ ...build.request, faults: [fault] });
    expect(next.instance).toEqual(build.instance);
    expect(build).toEqual(before);
    next.instance.flavor.extra_specs.x = 'y';
    next.request!.alternates.push('z');
    expect(build).toEqual(before);
    expect(validateBuildBody(next)).toEqual({ ok: true, value: next });
    const twice = rescheduleBody(next, { ...fault, host: 'host-b' });
    expect(twice.request!.faults.map((f) => f.host)).toEqual(['compute-1', 'host-b']);
  });

  it('clips a long fault and keeps the last 100 faults, so the result always passes the check', () => {
    const build = placed();
    build.request!.faults = Array.from({ length: LIMITS.faults }, (_, i) => ({ ...fault, host: `h${i}` }));
    const next = rescheduleBody(build, { ...fault, code: '', message: `${'m'.repeat(4095)}\u{1f600}`, remedy: 'r'.repeat(9000) });
    expect(next.request!.faults).toHaveLength(LIMITS.faults);
    expect(next.request!.faults[0]!.host).toBe('h1');
    const last = next.request!.faults.at(-1)!;
    expect(last.message).toBe('m'.repeat(4095));
    expect(last.remedy).toHaveLength(4096);
    expect(last.code).toBe('INTERNAL');
    expect(validateBuildBody(next).ok).toBe(true);
  });

  it('refuses a direct build: it is not rescheduled', () => {
    const { request: _placement, ...direct } = placed();
    expect(() => rescheduleBody(direct, fault)).toThrow(/direct build/);
  });
});

describe('replies', () => {
  it('okReply and errorReply make the two bodies, and validateReplyBody reads them back', () => {
    expect(okReply({ instances: [] })).toEqual({ ok: true, result: { instances: [] } });
    const hostFault: HostFault = { host: 'h', code: 'INSTANCE_NOT_FOUND', message: 'No such instance.', remedy: 'Check the UUID.' };
    expect(errorReply(hostFault)).toEqual({ ok: false, error: { code: 'INSTANCE_NOT_FOUND', message: 'No such instance.', remedy: 'Check the UUID.' } });
    expect(validateReplyBody(errorReply(hostFault))).toEqual({ ok: true, value: errorReply(hostFault) });
    expect(validateReplyBody(okReply(3))).toEqual({ ok: true, value: okReply(3) });
    expect(refusal(validateReplyBody({ ok: 'yes' })).reason).toBe("body.ok is the string 'yes': give true or false.");
    expect(refusal(validateReplyBody({ ok: false, error: { code: 'X', message: 'm' } })).reason).toBe('body.error.remedy is missing: give a string.');
  });
});

describe('one definition of the instance limits', () => {
  const top = path.resolve(import.meta.dirname, '../..');

  it('spec.ts re-exports them from messaging/contracts/instance-limits.ts and defines none itself', () => {
    const text = readFileSync(path.join(top, 'hypervisor/instance/spec.ts'), 'utf8');
    for (const name of ['MIN_MEMORY_MIB', 'MAX_MEMORY_MIB', 'MAX_VCPUS', 'MAX_NAME_LENGTH']) {
      expect(text, name).not.toMatch(new RegExp(`const ${name}\\b`));
      expect(spec[name as keyof typeof spec], name).toBe(limits[name as keyof typeof limits]);
    }
    expect(text).not.toMatch(/const (ARCH|MACHINE)\b/);
  });

  it('the bus and the launch refuse alike at the edges', () => {
    const launch = (change: Partial<Parameters<typeof validateInstanceSpec>[0]>) => () => validateInstanceSpec({ name: 'x', vcpus: 1, memoryMiB: 256, image: { source: '/nonexistent/x.qcow2' }, ...change });
    const bus = (change: (b: Record<string, any>) => void) => validateBuildBody(buildWith(change)).ok;
    expect(launch({ vcpus: limits.MAX_VCPUS + 1 })).toThrow(InstanceSpecError);
    expect(bus((b) => (b.instance.flavor.vcpus = limits.MAX_VCPUS + 1))).toBe(false);
    expect(launch({ memoryMiB: limits.MIN_MEMORY_MIB - 1 })).toThrow(InstanceSpecError);
    expect(bus((b) => (b.instance.flavor.memory_mb = limits.MIN_MEMORY_MIB - 1))).toBe(false);
    expect(launch({ imageProperties: { hw_architecture: 'x86-64' } })).toThrow(InstanceSpecError);
    expect(bus((b) => (b.instance.image.properties.hw_architecture = 'x86-64'))).toBe(false);
    expect(launch({ imageProperties: { hw_machine_type: 'pc q35' } })).toThrow(InstanceSpecError);
    expect(launch({ imageProperties: { img_hv_type: 'xen' } })).toThrow(InstanceSpecError);
    expect(launch({ vcpus: limits.MAX_VCPUS, memoryMiB: limits.MAX_MEMORY_MIB, imageProperties: { hw_architecture: 'aarch64', hw_machine_type: 'virt', img_hv_type: 'kvm' } })).not.toThrow();
  });
});

describe('host names', () => {
  it('fit novalet.compute.<host> in 255 bytes and are no AMQP wildcard', () => {
    expect(`novalet.compute.${'h'.repeat(MAX_HOST_NAME_LENGTH)}`).toHaveLength(255);
    for (const name of ['compute-1', 'node1.example.com', '10.0.0.7', 'fe80::1', 'host_b']) expect(isHostName(name), name).toBe(true);
    for (const name of ['', 'a*', 'a#b', 'a b', 'a/b', 'é', 'h'.repeat(240), 42]) expect(isHostName(name), String(name)).toBe(false);
  });
});
