/**
 * A domain's life through the binding, against libvirt's embedded QEMU driver
 * and a real QEMU (TCG): define, start, state, metadata, events, stop,
 * undefine — and libvirt's errors on the way, with their real codes.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { LifecycleEvent } from '../../hypervisor/libvirt/domain-lifecycle.js';
import { DomainXml } from '../../hypervisor/libvirt/constants.js';
import type { LibvirtConnection } from '../../hypervisor/libvirt/connection.js';
import type { LibvirtDomain } from '../../hypervisor/libvirt/domain.js';
import { LibvirtError } from '../../hypervisor/libvirt/error.js';
import {
  minimalDomainXml,
  openTestRoot,
  processesMentioning,
  removeDomain,
  testDomainName,
  waitFor,
} from './libvirt-test-support.js';

const NAMESPACE = 'http://novalet.example/instance/1.0';

let connection: LibvirtConnection;
let root: string;
const created: LibvirtDomain[] = [];

beforeAll(async () => {
  ({ connection, root } = await openTestRoot());
}, 120_000);

afterEach(async () => {
  for (const domain of created.splice(0)) await removeDomain(domain);
});

afterAll(async () => {
  await connection?.close();
  // No QEMU of ours outlives the tests: every one of them runs with the root in its command line.
  expect(await processesMentioning(`${root}/`)).toEqual([]);
});

async function define(name: string, extra: { emulator?: string; uuid?: string } = {}): Promise<LibvirtDomain> {
  const domain = await connection.defineDomain(minimalDomainXml({ name, serialLog: `${root}/${name}.serial.log`, ...extra }));
  created.push(domain);
  return domain;
}

async function rejection(promise: Promise<unknown>): Promise<LibvirtError> {
  const error = await promise.then(
    () => null,
    (thrown: unknown) => thrown,
  );
  expect(error).toBeInstanceOf(LibvirtError);
  return error as LibvirtError;
}

describe('a domain through its life', () => {
  it('is defined, started, running with metadata, destroyed, undefined and then not found', async () => {
    const name = testDomainName('life');
    const uuid = randomUUID();
    const domain = await define(name, { uuid });
    expect(domain.name).toBe(name);
    expect(domain.uuid).toBe(uuid);
    expect(await domain.getState()).toEqual({ state: 'shutoff', reason: 0 });
    expect(await domain.isActive()).toBe(false);
    expect(await domain.isPersistent()).toBe(true);

    await domain.create();
    expect(await domain.getState()).toEqual({ state: 'running', reason: 1 }); // VIR_DOMAIN_RUNNING_BOOTED
    expect(await domain.isActive()).toBe(true);
    expect(await processesMentioning(`guest=${name},`)).toHaveLength(1);

    await domain.setMetadata('element', '<instance state="active"><flavor>m1.tiny</flavor></instance>', 'nv', NAMESPACE);
    const live = await domain.getMetadata('element', NAMESPACE);
    expect(live).toBe('<instance state="active">\n  <flavor>m1.tiny</flavor>\n</instance>');
    // Set on a running persistent domain, it went to the definition too.
    expect(await domain.getXmlDesc(DomainXml.INACTIVE)).toContain(`<nv:instance xmlns:nv="${NAMESPACE}" state="active">`);
    expect(await domain.getMetadata('element', 'http://novalet.example/other')).toBeNull();

    const found = await connection.lookupByUuid(uuid);
    expect(found?.name).toBe(name);
    await found?.free();
    const listed = await connection.listAllDomains();
    expect(listed.map((d) => d.uuid)).toContain(uuid);
    await Promise.all(listed.map((d) => d.free()));

    await domain.destroy();
    expect(await domain.getState()).toEqual({ state: 'shutoff', reason: 2 }); // VIR_DOMAIN_SHUTOFF_DESTROYED
    expect(await processesMentioning(`guest=${name},`)).toEqual([]);

    await domain.undefine();
    expect(await connection.lookupByUuid(uuid)).toBeNull();
    expect(await connection.lookupByName(name)).toBeNull();
  });

  it('reports started and stopped (and defined, undefined) lifecycle events on the main thread', async () => {
    const name = testDomainName('events');
    const events: LifecycleEvent[] = [];
    const other: LifecycleEvent[] = [];
    const unsubscribe = connection.onLifecycleEvent((event) => {
      if (event.name === name) events.push(event);
    });
    const unsubscribeOther = connection.onLifecycleEvent((event) => other.push(event));
    await unsubscribe.ready;
    try {
      const domain = await define(name);
      await domain.create();
      await domain.destroy();
      await domain.undefine();
      await waitFor('the undefined event', () => events.find((e) => e.event === 'undefined'));
      const seen = events.map((e) => `${e.event}/${e.detail}`);
      expect(seen).toEqual(expect.arrayContaining(['defined/added', 'started/booted', 'stopped/destroyed', 'undefined/removed']));
      expect(seen.indexOf('started/booted')).toBeLessThan(seen.indexOf('stopped/destroyed'));
      expect(events.every((e) => e.uuid === domain.uuid)).toBe(true);
      expect(other.length).toBeGreaterThanOrEqual(events.length);
    } finally {
      unsubscribe();
      unsubscribeOther();
    }
    // Unsubscribed: a later domain's events reach nobody.
    const count = events.length;
    const later = await define(`${name}-later`);
    await later.undefine();
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(events.length).toBe(count);
  });

  it('presses the ACPI power button and reboot button without error; with no OS to act on them the guest keeps running', async () => {
    const domain = await define(testDomainName('acpi'));
    await domain.create();
    await domain.shutdown();
    await domain.reboot();
    expect((await domain.getState()).state).toBe('running');
  });

  it('runs a transient domain that disappears when destroyed', async () => {
    const name = testDomainName('transient');
    const domain = await connection.createTransient(minimalDomainXml({ name, serialLog: `${root}/${name}.serial.log` }));
    created.push(domain);
    expect(await domain.isPersistent()).toBe(false);
    expect((await domain.getState()).state).toBe('running');
    // A transient domain has no definition to hold metadata: only the live state takes it.
    await domain.setMetadata('element', '<instance/>', 'nv', NAMESPACE);
    expect(await domain.getMetadata('element', NAMESPACE)).toBe('<instance/>');
    await domain.destroy();
    expect(await connection.lookupByName(name)).toBeNull();
  });

  it('remove(): stops a running domain and forgets it; again on a removed one is no error', async () => {
    const name = testDomainName('remove');
    const uuid = randomUUID();
    const domain = await define(name, { uuid });
    await domain.create();
    expect(await domain.isActive()).toBe(true);
    await domain.remove();
    expect(await connection.lookupByUuid(uuid)).toBeNull();
    await domain.remove();
  });

  it('frees its handle once; using it afterwards is a clear error', async () => {
    const domain = await define(testDomainName('free'));
    const again = await connection.lookupByUuid(domain.uuid);
    expect(again).not.toBeNull();
    await again!.free();
    await again!.free();
    expect(again!.freed).toBe(true);
    await expect(again!.getState()).rejects.toMatchObject({ code: 'LIBVIRT_DOMAIN_FREED' });
    expect((await domain.getState()).state).toBe('shutoff');
  });
});

describe("libvirt's errors, as LibvirtError", () => {
  it('malformed XML: VIR_ERR_XML_DETAIL from VIR_FROM_DOMAIN with libvirt\'s words', async () => {
    const error = await rejection(connection.defineDomain('<domain type="qemu"><name>broken'));
    expect(error.code).toBe('LIBVIRT_ERROR');
    expect(error.libvirtCodeName).toBe('VIR_ERR_XML_DETAIL');
    expect(error.libvirtCode).toBe(35);
    expect(error.libvirtDomainName).toBe('VIR_FROM_DOMAIN');
    // libvirt 9 says "(domain_definition):1: …", libvirt 11 "at line 1: …": the place, in libvirt's words.
    expect(error.libvirtMessage).toMatch(/^(\(domain_definition\):1: |at line 1: )/);
    const firstLine = error.libvirtMessage.split('\n')[0] as string;
    expect(error.message.startsWith(`libvirt could not define the domain: ${firstLine}`)).toBe(true);
    expect(error.message).toMatch(/ \(VIR_ERR_XML_DETAIL\)\. Fix the XML document/);
    expect(error.message).not.toContain('\n');
  });

  it('well-formed XML without an OS type: VIR_ERR_XML_ERROR', async () => {
    const error = await rejection(connection.defineDomain(`<domain type='qemu'><name>${testDomainName('noos')}</name></domain>`));
    expect(error.libvirtCodeName).toBe('VIR_ERR_XML_ERROR');
    expect(error.libvirtMessage).toBe('XML error: an os <type> must be specified');
  });

  it('a missing emulator: VIR_ERR_SYSTEM_ERROR from VIR_FROM_QEMU naming the binary', async () => {
    const error = await rejection(define(testDomainName('emu'), { emulator: '/usr/bin/qemu-system-x86_64-missing' }));
    expect(error.libvirtCodeName).toBe('VIR_ERR_SYSTEM_ERROR');
    expect(error.libvirtDomainName).toBe('VIR_FROM_QEMU');
    expect(error.libvirtMessage).toBe('Cannot check QEMU binary /usr/bin/qemu-system-x86_64-missing: No such file or directory');
    expect(error.remedy).toMatch(/exists/);
  });

  it('starting a running domain and destroying a stopped one: VIR_ERR_OPERATION_INVALID', async () => {
    const domain = await define(testDomainName('state'));
    const notRunning = await rejection(domain.destroy());
    expect(notRunning.libvirtCodeName).toBe('VIR_ERR_OPERATION_INVALID');
    expect(notRunning.libvirtMessage).toBe('Requested operation is not valid: domain is not running');
    expect(notRunning.message).toContain(`libvirt could not destroy domain ${domain.name} (${domain.uuid}): `);
    await domain.create();
    const running = await rejection(domain.create());
    expect(running.libvirtCodeName).toBe('VIR_ERR_OPERATION_INVALID');
    expect(running.libvirtMessage).toBe('Requested operation is not valid: domain is already running');
  });

  it('concurrent failing calls each get their own error (errors are per thread in libvirt)', async () => {
    const outcomes = await Promise.allSettled([
      connection.defineDomain('<domain'),
      connection.lookupByUuid('not-a-uuid'),
      connection.getDomainCapabilities({ arch: 'sparc' }),
      connection.defineDomain(`<domain type='qemu'><name>${testDomainName('noos')}</name></domain>`),
      connection.getDomainCapabilities({ emulatorbin: '/nonexistent/qemu' }),
    ]);
    const names = outcomes.map((outcome) => (outcome.status === 'rejected' ? (outcome.reason as LibvirtError).libvirtCodeName : 'ok'));
    expect(names).toEqual([
      'VIR_ERR_XML_DETAIL',
      'VIR_ERR_INVALID_ARG',
      'VIR_ERR_CONFIG_UNSUPPORTED',
      'VIR_ERR_XML_ERROR',
      'VIR_ERR_SYSTEM_ERROR',
    ]);
  });

  it('a lookup of an unknown domain is null, not an error', async () => {
    expect(await connection.lookupByName(testDomainName('nobody'))).toBeNull();
    expect(await connection.lookupByUuid(randomUUID())).toBeNull();
  });
});
