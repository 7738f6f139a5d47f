/**
 * Start-up reconciliation on the fake driver (agent/recovery.ts): an
 * interrupted build is built again from its record (or failed without one),
 * a running domain is adopted, a lost domain is an ERROR, a domain without
 * a record is reported and left alone — and whatever recovery finishes is
 * published as the operation would have, under its request's ids.
 */
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { InstanceRecord } from '../../agent/instance-record.js';
import { recoverInstances } from '../../agent/recovery.js';
import { createLogger } from '../../config/logger.js';
import { NovaletError } from '../../config/novalet-error.js';
import { validateInstanceSpec } from '../../hypervisor/compute-driver.js';
import { answerId } from '../../service/message-ids.js';
import { AgentHarness } from '../support/agent-harness.js';
import { mountSmallFileSystem } from '../support/small-filesystem.js';
import type { FakeComputeDriver } from '../support/fake-compute-driver.js';

const harnesses: AgentHarness[] = [];
afterEach(async () => {
  for (const h of harnesses.splice(0)) {
    await h.stop();
    h.remove();
  }
});

const log = createLogger({ name: 'recovery-test' });
const spec = (n: number) => validateInstanceSpec({ uuid: `0b6c8f3e-2a4d-4c1e-9f00-${String(n).padStart(12, '0')}`, name: `i${n}`, vcpus: 1, memoryMiB: 64, kernel: '/k' });

function recordOf(n: number, extra: Partial<InstanceRecord> = {}): InstanceRecord {
  const s = spec(n);
  const now = new Date().toISOString();
  return { uuid: s.uuid, name: s.name, host: 'harness-host', state: 'active', task: null, flavor: { vcpus: 1, memoryMiB: 64 }, image: null, kernel: '/k', virtType: 'qemu', virtTypeReason: 'TCG', fault: null, createdAt: now, updatedAt: now, ...extra };
}

async function setUp() {
  const h = await AgentHarness.start();
  harnesses.push(h);
  return { h, driver: h.driver as FakeComputeDriver, store: h.core.store };
}

describe('recoverInstances', () => {
  it('sorts every record into one outcome, publishes what changed, and never destroys a domain without a record', async () => {
    const { h, driver, store } = await setUp();
    // 1: an interrupted build from the bus (record BUILDING, its domain half made); 2: one with no request on record.
    await store.commit(recordOf(1, { state: 'building', task: 'spawning', origin: { messageId: 'm1', body: { x: 1 }, rescheduledAt: null } }));
    driver.addGuest(spec(1));
    await store.commit(recordOf(2, { state: 'building', task: 'spawning' }));
    // 3: active and running; 4: active but its domain is gone; 5: a domain nobody recorded; 6: stopped whose guest runs.
    await store.commit(recordOf(3));
    driver.addGuest(spec(3));
    await store.commit(recordOf(4));
    driver.addGuest(spec(5));
    await store.commit(recordOf(6, { state: 'stopped' }));
    driver.addGuest(spec(6));

    const result = await recoverInstances(driver, h.core.instances, log);
    await h.settle();
    expect(result.rebuild.map((r) => r.uuid)).toEqual([spec(1).uuid]);
    expect(result.failed).toEqual([spec(2).uuid]);
    expect(result.lost).toEqual([spec(4).uuid]);
    expect(result.unrecorded.map((d) => d.uuid)).toEqual([spec(5).uuid]);
    expect(result.adopted.sort()).toEqual([spec(3).uuid, spec(6).uuid].sort());
    // The half-made domain of the interrupted build is gone; the unrecorded one is still there.
    expect((await driver.list()).map((d) => d.uuid).sort()).toEqual([spec(3).uuid, spec(5).uuid, spec(6).uuid].sort());
    expect(store.get(spec(2).uuid)?.fault?.code).toBe('BUILD_INTERRUPTED');
    expect(store.get(spec(4).uuid)).toMatchObject({ state: 'error', fault: { code: 'DOMAIN_LOST' } });
    expect(store.get(spec(6).uuid)?.state).toBe('active');
    expect(h.events(spec(2).uuid)).toEqual(['create.error']);
    expect(h.event(spec(4).uuid, 'power.off')!.body).toMatchObject({ state: 'error', fault: { code: 'DOMAIN_LOST' } });
    expect(h.events(spec(6).uuid)).toEqual(['power.on']);
    expect(h.events(spec(3).uuid)).toEqual([]);
  });

  it('a BUILDING record whose build had ended already (a delete won; the kill came before the delete finished) is not built again: ERROR, no new event', async () => {
    const { h, driver, store } = await setUp();
    const fault = { code: 'INSTANCE_DELETED_DURING_BUILD' as const, message: 'deleted during its build', at: new Date().toISOString() };
    await store.commit(recordOf(13, { state: 'building', task: 'spawning', fault, origin: { messageId: 'm13', body: { x: 1 }, rescheduledAt: null, answered: 'create.error' } }));
    driver.addGuest(spec(13));
    const result = await recoverInstances(driver, h.core.instances, log);
    await h.settle();
    expect(result.rebuild).toEqual([]);
    expect(store.get(spec(13).uuid)).toMatchObject({ state: 'error', task: null, fault: { code: 'INSTANCE_DELETED_DURING_BUILD' } });
    expect(await driver.list()).toEqual([]);
    expect(h.events(spec(13).uuid)).toEqual([]);
  });

  it('on a full disk recovery still completes: an instance whose outcome cannot be written stays as it was on disk (its request comes again), the start goes on', async () => {
    const fs = mountSmallFileSystem(4096);
    try {
      const h = await AgentHarness.start({ stateDir: path.join(fs.dir, 'state') });
      harnesses.push(h);
      const driver = h.driver as FakeComputeDriver;
      const request = { id: '66666666-8c1d-4e7f-9a2b-3c4d5e6f7a8b', kind: 'stop' as const };
      driver.addGuest(spec(14));
      await h.core.store.commit(recordOf(14, { task: 'powering-off', request }));
      driver.addGuest(spec(15));
      await h.core.store.commit(recordOf(15));
      fs.fill();
      const result = await recoverInstances(driver, h.core.instances, log);
      expect(result.lost).toContain(spec(14).uuid);
      expect(result.adopted).toContain(spec(15).uuid);
      expect(h.core.store.get(spec(14).uuid)).toMatchObject({ task: 'powering-off', request });
      fs.free();
      await h.stop();
      harnesses.splice(harnesses.indexOf(h), 1);
      h.remove();
    } finally {
      fs.unmount();
    }
  });

  it('finishes a delete that was under way and publishes its delete.end under the delete\'s id', async () => {
    const { h, driver, store } = await setUp();
    driver.addGuest(spec(7));
    const request = { id: '5b0e2f4a-8c1d-4e7f-9a2b-3c4d5e6f7a8b', kind: 'delete' as const };
    await store.commit(recordOf(7, { task: 'deleting', request }));
    const result = await recoverInstances(driver, h.core.instances, log);
    await h.settle();
    expect(result.finished).toEqual([spec(7).uuid]);
    expect(store.get(spec(7).uuid)).toMatchObject({ state: 'deleted', task: null });
    expect(store.get(spec(7).uuid)!.request).toBeUndefined();
    expect(await driver.list()).toEqual([]);
    expect(h.event(spec(7).uuid, 'delete.end')!.id).toBe(answerId(request.id, 'delete.end'));
  });

  it('finishes a stop, a start and a reboot that were under way, by the domain\'s state, each under its request\'s id', async () => {
    const { h, driver, store } = await setUp();
    const ids = { stop: '11111111-8c1d-4e7f-9a2b-3c4d5e6f7a8b', start: '22222222-8c1d-4e7f-9a2b-3c4d5e6f7a8b', reboot: '33333333-8c1d-4e7f-9a2b-3c4d5e6f7a8b' };
    driver.addGuest(spec(8));
    await store.commit(recordOf(8, { task: 'powering-off', request: { id: ids.stop, kind: 'stop' } }));
    driver.addGuest(spec(9));
    await driver.powerOff(spec(9).uuid, 0);
    await store.commit(recordOf(9, { state: 'stopped', task: 'powering-on', request: { id: ids.start, kind: 'start' } }));
    driver.addGuest(spec(10));
    await driver.powerOff(spec(10).uuid, 0);
    await store.commit(recordOf(10, { task: 'rebooting', request: { id: ids.reboot, kind: 'reboot', type: 'SOFT' } }));
    await recoverInstances(driver, h.core.instances, log);
    await h.settle();
    expect(await driver.state(spec(8).uuid)).toBe('shutdown');
    expect(store.get(spec(8).uuid)).toMatchObject({ state: 'stopped', task: null });
    expect(h.event(spec(8).uuid, 'power.off')!.id).toBe(answerId(ids.stop, 'power.off'));
    expect(await driver.state(spec(9).uuid)).toBe('running');
    expect(h.event(spec(9).uuid, 'power.on')!.id).toBe(answerId(ids.start, 'power.on'));
    expect(await driver.state(spec(10).uuid)).toBe('running');
    expect(h.event(spec(10).uuid, 'reboot.end')).toMatchObject({ id: answerId(ids.reboot, 'reboot.end'), body: { type: 'HARD', requested_type: 'SOFT', state: 'active' } });
  });

  it('an instance the hypervisor cannot settle is ERROR with why (its request answered action.error); the others are recovered and the service starts', async () => {
    const { h, driver, store } = await setUp();
    const stuck = { id: '44444444-8c1d-4e7f-9a2b-3c4d5e6f7a8b', kind: 'delete' as const };
    driver.addGuest(spec(11));
    await store.commit(recordOf(11, { task: 'deleting', request: stuck }));
    driver.addGuest(spec(12));
    await store.commit(recordOf(12, { state: 'stopped' }));
    const destroy = driver.destroy.bind(driver);
    driver.destroy = async (uuid) => {
      if (uuid === spec(11).uuid) throw new NovaletError('LIBVIRT_ERROR', 'libvirt could not destroy the domain: Timed out during operation: cannot acquire state change lock.', 'Look at libvirt.');
      return destroy(uuid);
    };
    const result = await recoverInstances(driver, h.core.instances, log);
    await h.settle();
    expect(store.get(spec(11).uuid)).toMatchObject({ state: 'error', task: null, fault: { code: 'LIBVIRT_ERROR' } });
    expect(h.event(spec(11).uuid, 'action.error')).toMatchObject({ id: answerId(stuck.id, 'action.error'), body: { action: 'delete', state: 'error' } });
    expect(result.adopted).toContain(spec(12).uuid);
    expect(store.get(spec(12).uuid)?.state).toBe('active');
  });
});
