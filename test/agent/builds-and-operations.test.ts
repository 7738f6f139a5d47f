/**
 * The compute host's builds and operations on the fake driver, in process
 * (test/support/agent-harness.ts): nova's states through each request, an
 * answer for every one — the event, the same event again under the same id
 * for a repeat, `action.error` when a cast cannot be carried out — a delete
 * that wins over a build, `create.start` only once a build really starts,
 * and reboot and crash as nova has them. The same over a real RabbitMQ is
 * test/agent/compute-service.test.ts; on real libvirt and QEMU,
 * test/integration/compute-service.test.ts.
 */
import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { watchLifecycle } from '../../agent/lifecycle-watch.js';
import { recoverInstances } from '../../agent/recovery.js';
import { createLogger } from '../../config/logger.js';
import { NovaletError } from '../../config/novalet-error.js';
import { answerId } from '../../service/message-ids.js';
import { AgentHarness, buildBody } from '../support/agent-harness.js';
import { FakeComputeDriver } from '../support/fake-compute-driver.js';

const harnesses: AgentHarness[] = [];
afterEach(async () => {
  for (const h of harnesses.splice(0)) {
    await h.stop();
    h.remove();
  }
});

async function harness(options: Parameters<typeof AgentHarness.start>[0] = {}): Promise<AgentHarness> {
  const h = await AgentHarness.start(options);
  harnesses.push(h);
  return h;
}

const placed = (attempt = 1) => ({ request: { attempt, max_attempts: 3, alternates: ['host-b'], faults: [] } });

describe('builds', () => {
  it('create.start then create.end, under ids derived from the request; the record ACTIVE with the virt type and why', async () => {
    const h = await harness();
    const uuid = randomUUID();
    const id = await h.build(buildBody(uuid));
    await h.settle();
    expect(h.events(uuid)).toEqual(['create.start', 'create.end']);
    expect(h.event(uuid, 'create.start')!.id).toBe(answerId(id, 'create.start'));
    expect(h.event(uuid, 'create.end')!.id).toBe(answerId(id, 'create.end'));
    expect(h.event(uuid, 'create.end')!.body).toMatchObject({ uuid, host: 'harness-host', state: 'active', virt_type: 'qemu' });
    expect(h.core.instances.get(uuid)).toMatchObject({ state: 'active', task: null, virtType: 'qemu' });
    expect(h.core.instances.get(uuid)!.outbox).toBeUndefined();
  });

  it('a redelivered build is answered again with its create.end under the same id, and nothing is built twice; a second message for it gets an answer of its own', async () => {
    const h = await harness();
    const driver = h.driver as FakeComputeDriver;
    const uuid = randomUUID();
    const id = await h.build(buildBody(uuid));
    await h.settle();
    await h.build(buildBody(uuid), id);
    const other = await h.build(buildBody(uuid));
    await h.settle();
    const ends = h.publisher.published.filter((m) => m.body.uuid === uuid && m.body.event === 'create.end');
    expect(ends.map((m) => m.id)).toEqual([answerId(id, 'create.end'), answerId(id, 'create.end'), answerId(other, 'create.end')]);
    expect(driver.calls.filter((c) => c === `spawn ${uuid}`)).toHaveLength(1);
  });

  it('a build under another message id that comes while the instance is BUILDING and no build holds it (a restart, before the build is resumed) is answered when the build ends, under its own id', async () => {
    const first = await harness();
    const driver = first.driver as FakeComputeDriver;
    driver.holdSpawns('download');
    const uuid = randomUUID();
    const id = await first.build(buildBody(uuid));
    await first.waitForEvent(uuid, 'create.start');
    // A stop hands the build back: its record stays BUILDING for the next start.
    await first.stop();
    harnesses.splice(harnesses.indexOf(first), 1);
    driver.releaseSpawns();
    const h = await harness({ stateDir: first.stateDir, driver });
    const rebuild = (await recoverInstances(driver, h.core.instances, createLogger({ name: 'builds-test' }))).rebuild;
    const other = await h.build(buildBody(uuid));
    expect(h.core.instances.get(uuid)).toMatchObject({ state: 'building', origin: { messageId: id, repeats: [other] } });
    for (const record of rebuild) h.core.builds.resume(record);
    await h.waitForEvent(uuid, 'create.end');
    await h.settle();
    const ends = h.publisher.published.filter((m) => m.body.uuid === uuid && m.body.event === 'create.end');
    expect(ends.map((m) => m.id).sort()).toEqual([answerId(id, 'create.end'), answerId(other, 'create.end')].sort());
    expect((await driver.list()).filter((d) => d.uuid === uuid)).toHaveLength(1);
  });

  it('a direct build refused before it starts is ERROR with its fault and create.error (will_retry false)', async () => {
    const h = await harness();
    const uuid = randomUUID();
    const body = buildBody(uuid);
    body.instance.image = { kernel: { name: 'not-there' }, cmdline: '', properties: {} } as never;
    await h.build(body);
    await h.settle();
    expect(h.events(uuid)).toEqual(['create.error']);
    expect(h.event(uuid, 'create.error')!.body).toMatchObject({ state: 'error', will_retry: false, fault: { code: 'IMAGE_NOT_IN_IMAGE_DIR' } });
    expect(h.core.instances.get(uuid)).toMatchObject({ state: 'error', fault: { code: 'IMAGE_NOT_IN_IMAGE_DIR' } });
  });

  it('a placed build that fails goes back to the schedulers (mandatory, its fault appended) and is not this host\'s any more', async () => {
    const h = await harness();
    const driver = h.driver as FakeComputeDriver;
    const uuid = randomUUID();
    driver.failNextSpawn(new NovaletError('QEMU_IMG_FAILED', 'qemu-img could not create the overlay.', 'Check qemu-img.'));
    const id = await h.build(buildBody(uuid, placed()));
    await h.settle();
    expect(h.events(uuid)).toEqual(['create.start', 'create.error']);
    expect(h.event(uuid, 'create.error')!.body).toMatchObject({ state: 'building', will_retry: true });
    const reschedule = h.publisher.published.find((m) => m.kind === 'reschedule')!;
    expect(reschedule.id).toBe(answerId(id, 'reschedule'));
    expect(reschedule.routingKey).toBe('scheduler');
    expect((reschedule.body.request as { faults: unknown[] }).faults).toEqual([{ host: 'harness-host', code: 'QEMU_IMG_FAILED', message: 'qemu-img could not create the overlay. Check qemu-img.', remedy: 'Check qemu-img.' }]);
    expect(h.core.instances.get(uuid)!.origin?.rescheduledAt).toBeTruthy();
  });

  it('a reschedule no queue takes is dead-lettered with the reason, never lost in silence', async () => {
    const h = await harness();
    h.publisher.unroutableKeys.add('scheduler');
    const uuid = randomUUID();
    const body = buildBody(uuid, placed(3));
    body.instance.image = { kernel: { name: 'not-there' }, cmdline: '', properties: {} } as never;
    await h.build(body);
    await h.settle();
    expect(h.publisher.deadLettered.map((m) => m.kind)).toEqual(['reschedule']);
    expect(h.events(uuid)).toEqual(['create.error']);
    expect(h.event(uuid, 'create.error')!.body).toMatchObject({ will_retry: false, state: 'error' });
  });

  it('create.start is sent when a build really starts: with max_concurrent_builds = 1 the second waits, task scheduling, without it', async () => {
    const h = await harness({ defaults: ['max_concurrent_builds = 1'] });
    const driver = h.driver as FakeComputeDriver;
    driver.holdSpawns();
    const [a, b] = [randomUUID(), randomUUID()];
    await h.build(buildBody(a));
    await h.build(buildBody(b));
    await h.waitForEvent(a, 'create.start');
    await h.core.outbox.drained();
    expect(h.events(a)).toEqual(['create.start']);
    expect(h.events(b)).toEqual([]);
    expect(h.core.instances.get(b)).toMatchObject({ state: 'building', task: 'scheduling' });
    driver.releaseSpawns();
    await h.settle();
    expect(h.events(b)).toEqual(['create.start', 'create.end']);
  });

  it('a delete wins over a build under way: the spawn is aborted at once, create.error says why, then delete.end', async () => {
    const h = await harness();
    const driver = h.driver as FakeComputeDriver;
    driver.holdSpawns();
    const uuid = randomUUID();
    const build = await h.build(buildBody(uuid));
    await h.waitForEvent(uuid, 'create.start');
    const del = await h.operate({ kind: 'delete', uuid });
    await h.settle();
    expect(h.events(uuid)).toEqual(['create.start', 'create.error', 'delete.end']);
    expect(h.event(uuid, 'create.error')!.id).toBe(answerId(build, 'create.error'));
    expect(h.event(uuid, 'create.error')!.body).toMatchObject({ will_retry: false, fault: { code: 'INSTANCE_DELETED_DURING_BUILD' } });
    expect(h.event(uuid, 'delete.end')!.id).toBe(answerId(del, 'delete.end'));
    expect(h.core.instances.get(uuid)!.state).toBe('deleted');
    expect(await driver.list()).toEqual([]);
    driver.releaseSpawns();
  });

  it("a placed build deleted during it, redelivered: only its create.error again (same id), never a reschedule of a deleted instance", async () => {
    const h = await harness();
    const driver = h.driver as FakeComputeDriver;
    driver.holdSpawns();
    const uuid = randomUUID();
    const id = await h.build(buildBody(uuid, placed()));
    await h.waitForEvent(uuid, 'create.start');
    await h.operate({ kind: 'delete', uuid });
    await h.settle();
    await h.build(buildBody(uuid, placed()), id);
    await h.settle();
    const errors = h.publisher.published.filter((m) => m.body.uuid === uuid && m.body.event === 'create.error');
    expect(errors.map((m) => m.id)).toEqual([answerId(id, 'create.error'), answerId(id, 'create.error')]);
    expect(errors.map((m) => m.body)).toEqual([errors[0]!.body, errors[0]!.body]);
    expect(h.publisher.published.filter((m) => m.kind === 'reschedule')).toEqual([]);
    driver.releaseSpawns();
  });

  it('a delete that comes while a build is being taken on (before the build holds its instance) wins: no spawn, delete.end and the build\'s create.error, nothing running', async () => {
    const h = await harness();
    const driver = h.driver as FakeComputeDriver;
    const uuid = randomUUID();
    const id = randomUUID();
    const del = randomUUID();
    // Not awaited in between: the delete waits for the lock the build's take holds, and gets it before the build's run.
    await Promise.all([h.build(buildBody(uuid), id), h.operate({ kind: 'delete', uuid }, del)]);
    await h.settle();
    expect(driver.calls).not.toContain(`spawn ${uuid}`);
    expect(await driver.list()).toEqual([]);
    expect(h.core.instances.get(uuid)!.state).toBe('deleted');
    expect(h.event(uuid, 'delete.end')!.id).toBe(answerId(del, 'delete.end'));
    expect(h.event(uuid, 'create.error')).toMatchObject({ id: answerId(id, 'create.error'), body: { fault: { code: 'INSTANCE_DELETED_DURING_BUILD' }, will_retry: false } });
    expect(h.events(uuid)).not.toContain('create.end');
  });

  it('a build under another message id for an instance built and stopped since is answered with the build\'s create.end under its own id', async () => {
    const h = await harness();
    const uuid = randomUUID();
    await h.build(buildBody(uuid));
    await h.settle();
    await h.operate({ kind: 'stop', uuid });
    const other = await h.build(buildBody(uuid));
    await h.settle();
    expect(h.publisher.published.find((m) => m.id === answerId(other, 'create.end'))?.body).toMatchObject({ event: 'create.end', uuid, virt_type: 'qemu' });
    expect(h.core.instances.get(uuid)!.state).toBe('stopped');
  });

  it('a delete of a build still waiting for its slot: no create.start at all', async () => {
    const h = await harness({ defaults: ['max_concurrent_builds = 1'] });
    const driver = h.driver as FakeComputeDriver;
    driver.holdSpawns();
    const [first, waiting] = [randomUUID(), randomUUID()];
    await h.build(buildBody(first));
    await h.build(buildBody(waiting));
    await h.operate({ kind: 'delete', uuid: waiting });
    expect(h.core.instances.get(waiting)!.state).toBe('deleted');
    driver.releaseSpawns();
    await h.settle();
    expect(h.events(waiting)).toEqual(['create.error', 'delete.end']);
    expect(driver.calls).not.toContain(`spawn ${waiting}`);
  });
});

/** Runs `work` with the hypervisor's lifecycle events recorded (agent/lifecycle-watch.ts), as the service records them. */
async function whileWatching(h: AgentHarness, work: () => Promise<void>): Promise<void> {
  const unwatch = watchLifecycle(h.driver, h.core.instances, h.core.locks, createLogger({ name: 'lifecycle-test' }));
  try {
    await work();
  } finally {
    unwatch();
  }
}

describe('operations', () => {
  async function active(h: AgentHarness): Promise<string> {
    const uuid = randomUUID();
    await h.build(buildBody(uuid));
    await h.settle();
    return uuid;
  }

  it('stop, start, reboot and delete move the record through nova\'s states, each answered under its request\'s ids', async () => {
    const h = await harness();
    const uuid = await active(h);
    const stop = await h.operate({ kind: 'stop', uuid });
    expect(h.core.instances.get(uuid)).toMatchObject({ state: 'stopped', task: null });
    await h.operate({ kind: 'start', uuid });
    await h.operate({ kind: 'reboot', uuid, type: 'HARD' });
    const del = await h.operate({ kind: 'delete', uuid });
    await h.settle();
    expect(h.events(uuid)).toEqual(['create.start', 'create.end', 'power.off', 'power.on', 'reboot.end', 'delete.end']);
    expect(h.event(uuid, 'power.off')!.id).toBe(answerId(stop, 'power.off'));
    expect(h.event(uuid, 'reboot.end')!.body).toMatchObject({ state: 'active', type: 'HARD', requested_type: 'HARD' });
    expect(h.event(uuid, 'delete.end')!.id).toBe(answerId(del, 'delete.end'));
    expect(h.core.instances.get(uuid)).toMatchObject({ state: 'deleted', task: null });
    expect(h.core.instances.get(uuid)!.request).toBeUndefined();
  });

  it('a redelivered delete of a deleted instance gets delete.end again, same id; a delete of an instance never here gets action.error', async () => {
    const h = await harness();
    const uuid = await active(h);
    const del = await h.operate({ kind: 'delete', uuid });
    await h.settle();
    await h.operate({ kind: 'delete', uuid }, del);
    const stranger = randomUUID();
    const missing = await h.operate({ kind: 'delete', uuid: stranger });
    await h.settle();
    expect(h.publisher.published.filter((m) => m.body.uuid === uuid && m.body.event === 'delete.end').map((m) => m.id)).toEqual([answerId(del, 'delete.end'), answerId(del, 'delete.end')]);
    expect(h.event(stranger, 'action.error')).toMatchObject({ id: answerId(missing, 'action.error'), body: { action: 'delete', state: 'deleted', fault: { code: 'INSTANCE_NOT_FOUND' } } });
  });

  it('a cast that fails is answered with action.error: a failed stop leaves the instance as it was, a failed reboot is ERROR, as nova', async () => {
    const h = await harness();
    const driver = h.driver as FakeComputeDriver;
    const uuid = await active(h);
    const failing = new NovaletError('LIBVIRT_ERROR', 'libvirt refused: operation failed.', 'Look at libvirt.');
    const powerOff = driver.powerOff.bind(driver);
    driver.powerOff = async () => {
      throw failing;
    };
    await h.operate({ kind: 'stop', uuid });
    expect(h.core.instances.get(uuid)).toMatchObject({ state: 'active', task: null, fault: { code: 'LIBVIRT_ERROR' } });
    driver.powerOff = powerOff;
    driver.reboot = async () => {
      throw failing;
    };
    await h.operate({ kind: 'reboot', uuid, type: 'SOFT' });
    await h.settle();
    expect(h.events(uuid)).toEqual(['create.start', 'create.end', 'action.error', 'action.error']);
    const errors = h.publisher.published.filter((m) => m.body.event === 'action.error').map((m) => m.body);
    expect(errors).toEqual([
      expect.objectContaining({ action: 'stop', state: 'active', fault: expect.objectContaining({ code: 'LIBVIRT_ERROR' }) }),
      expect.objectContaining({ action: 'reboot', state: 'error', fault: expect.objectContaining({ code: 'LIBVIRT_ERROR' }) }),
    ]);
    expect(h.core.instances.get(uuid)!.state).toBe('error');
  });

  it('a SOFT reboot of a stopped instance is refused with INSTANCE_NOT_RUNNING and leaves it stopped (nova refuses it too); HARD starts it', async () => {
    const h = await harness();
    const uuid = await active(h);
    await h.operate({ kind: 'stop', uuid });
    await h.operate({ kind: 'reboot', uuid, type: 'SOFT' });
    expect(h.core.instances.get(uuid)).toMatchObject({ state: 'stopped', task: null });
    await h.operate({ kind: 'reboot', uuid, type: 'HARD' });
    await h.settle();
    expect(h.event(uuid, 'action.error')!.body).toMatchObject({ action: 'reboot', state: 'stopped', fault: { code: 'INSTANCE_NOT_RUNNING' } });
    expect(h.core.instances.get(uuid)).toMatchObject({ state: 'active' });
  });

  it('stop, start and reboot of an instance being built are refused at once with INSTANCE_BUSY; the build goes on', async () => {
    const h = await harness();
    const driver = h.driver as FakeComputeDriver;
    driver.holdSpawns();
    const uuid = randomUUID();
    await h.build(buildBody(uuid));
    await h.operate({ kind: 'stop', uuid });
    await h.core.outbox.drained();
    expect(h.event(uuid, 'action.error')!.body).toMatchObject({ action: 'stop', state: 'building', fault: { code: 'INSTANCE_BUSY' } });
    driver.releaseSpawns();
    await h.settle();
    expect(h.core.instances.get(uuid)!.state).toBe('active');
  });

  it('a redelivered reboot (or stop, start) that was done already is answered again under the same id and not done twice', async () => {
    const h = await harness();
    const driver = h.driver as FakeComputeDriver;
    const uuid = await active(h);
    const reboot = await h.operate({ kind: 'reboot', uuid, type: 'HARD' });
    await h.operate({ kind: 'reboot', uuid, type: 'HARD' }, reboot);
    await h.settle();
    expect(driver.calls.filter((c) => c.startsWith('reboot'))).toHaveLength(1);
    const ends = h.publisher.published.filter((m) => m.body.uuid === uuid && m.body.event === 'reboot.end');
    expect(ends.map((m) => m.id)).toEqual([answerId(reboot, 'reboot.end'), answerId(reboot, 'reboot.end')]);
    expect(ends[1]!.body).toEqual(ends[0]!.body);
  });

  it('a stop of a stopped instance and a start of an active one are answered with their event, and nothing is done', async () => {
    const h = await harness();
    const driver = h.driver as FakeComputeDriver;
    const uuid = await active(h);
    await h.operate({ kind: 'start', uuid });
    await h.operate({ kind: 'stop', uuid });
    const again = await h.operate({ kind: 'stop', uuid });
    await h.settle();
    expect(h.events(uuid)).toEqual(['create.start', 'create.end', 'power.on', 'power.off', 'power.off']);
    expect(h.publisher.published.at(-1)!.id).toBe(answerId(again, 'power.off'));
    expect(driver.calls.filter((c) => c.startsWith('powerOn'))).toEqual([]);
    expect(driver.calls.filter((c) => c.startsWith('powerOff'))).toHaveLength(1);
  });

  it("a SOFT reboot the guest ignores for wait_soft_reboot_seconds ends HARD, and reboot.end says so (nova's _soft_reboot, then _hard_reboot)", async () => {
    const h = await harness({ defaults: [] });
    h.config.libvirt.wait_soft_reboot_seconds = 0;
    const driver = h.driver as FakeComputeDriver;
    const uuid = await active(h);
    await h.operate({ kind: 'reboot', uuid, type: 'SOFT' });
    driver.guestIgnoresAcpi(uuid);
    await h.operate({ kind: 'reboot', uuid, type: 'SOFT' });
    await h.settle();
    const ends = h.publisher.published.filter((m) => m.body.event === 'reboot.end').map((m) => m.body);
    expect(ends).toEqual([expect.objectContaining({ type: 'SOFT', requested_type: 'SOFT' }), expect.objectContaining({ type: 'HARD', requested_type: 'SOFT', state: 'active' })]);
    expect(h.core.instances.get(uuid)).toMatchObject({ state: 'active', task: null });
  });

  it("the guest's own power-off during a SOFT reboot (the lifecycle event waits for the reboot's lock) is history once the reboot has it running: no power.off, ACTIVE", async () => {
    const h = await harness();
    const uuid = await active(h);
    await whileWatching(h, async () => {
      await h.operate({ kind: 'reboot', uuid, type: 'SOFT' });
      // The lifecycle event queued behind the reboot has run once a later holder of the lock gets it.
      await h.core.locks.run(uuid, async () => undefined);
      await h.settle();
    });
    expect(h.events(uuid)).toEqual(['create.start', 'create.end', 'reboot.end']);
    expect(h.core.instances.get(uuid)).toMatchObject({ state: 'active', task: null });
  });

  it('a guest that powers itself off is STOPPED with power.off (a random id: nobody asked)', async () => {
    const h = await harness();
    const driver = h.driver as FakeComputeDriver;
    const uuid = await active(h);
    await whileWatching(h, async () => {
      driver.guestPowersOff(uuid);
      for (let i = 0; i < 200 && h.core.instances.get(uuid)?.state !== 'stopped'; i++) await new Promise((resolve) => setTimeout(resolve, 5));
      await h.settle();
    });
    expect(h.core.instances.get(uuid)).toMatchObject({ state: 'stopped', task: null });
    expect(h.event(uuid, 'power.off')!.body).toMatchObject({ state: 'stopped' });
  });

  it('a guest that crashes is ERROR with GUEST_CRASHED and power.off (state error, with the fault); start clears the fault', async () => {
    const h = await harness();
    const driver = h.driver as FakeComputeDriver;
    const uuid = await active(h);
    await whileWatching(h, async () => {
      driver.guestCrashes(uuid);
      for (let i = 0; i < 200 && h.core.instances.get(uuid)?.state !== 'error'; i++) await new Promise((resolve) => setTimeout(resolve, 5));
      expect(h.core.instances.get(uuid)).toMatchObject({ state: 'error', fault: { code: 'GUEST_CRASHED' } });
      await h.operate({ kind: 'start', uuid });
      await h.settle();
    });
    expect(h.events(uuid)).toEqual(['create.start', 'create.end', 'power.off', 'power.on']);
    expect(h.event(uuid, 'power.off')!.body).toMatchObject({ state: 'error', fault: { code: 'GUEST_CRASHED' } });
    expect(h.core.instances.get(uuid)).toMatchObject({ state: 'active', fault: null });
  });
});
