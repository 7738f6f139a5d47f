/**
 * `kill -9` of a real `novalet compute` (real libvirt and QEMU under TCG, a
 * private RabbitMQ) in the middle of builds, deletes and power changes, then
 * a restart: every request still gets its answer, and an answer given twice
 * (published again by recovery, or to a redelivered request) carries the
 * same envelope id, derived from the request's (answerId), so consumers drop
 * the repeat (issue 16, trial point 1).
 *
 * Before issue 16 (ef5a7f7) these fail: recovery finished an interrupted
 * delete without a word, the redelivered delete then found no instance and
 * answered INSTANCE_NOT_FOUND, and no `delete.end` was ever sent (20 of 20
 * in the trial); events were published from memory after the state was
 * written, so a kill between the two lost them, and ids were random for
 * each publish.
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { answerId } from '../../service/message-ids.js';
import { buildTestGuest } from '../guest/test-guest.js';
import { BusClient } from '../support/bus-client.js';
import { freePort, type ComputeAgent } from '../support/compute-agent.js';
import { startRabbitMq, type RabbitMqHandle } from '../support/rabbitmq.js';
import { Agents, destroyAllDomains, expectNothingLeft, guestReady, kernelBuild, qemuOf, waitForLine, waitUntil, writeComputeConfig } from './compute-fixture.js';

const ROOT = '/var/tmp/novalet-test-faults-crash';
const host = `crash-${randomUUID().slice(0, 8)}`;

let rabbit: RabbitMqHandle;
let stateDir: string;
let configFile: string;
let agents: Agents;
let agent: ComputeAgent;
let client: BusClient;

beforeAll(async () => {
  expect(buildTestGuest().status).toBe(0);
  rabbit = await startRabbitMq();
  stateDir = mkdtempSync('/tmp/nvl-crash-');
  configFile = path.join(stateDir, 'novalet.conf');
  writeComputeConfig(configFile, { host, statePath: stateDir, transportUrl: rabbit.transportUrl, apiPort: await freePort(), root: ROOT });
  agents = new Agents(configFile);
  agent = await agents.serving();
  client = await BusClient.connect(rabbit.url);
}, 240_000);

afterAll(async () => {
  await client?.close();
  await agents?.stopAll();
  await destroyAllDomains(ROOT).catch((err: unknown) => console.error(err));
  await rabbit?.stop();
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
  await expectNothingLeft(configFile, ROOT, rabbit?.dir);
}, 120_000);

/** The task on an instance's record file, as the service last wrote it (null when none or unreadable mid-rename). */
function taskOnDisk(uuid: string): string | null {
  try {
    return (JSON.parse(readFileSync(path.join(stateDir, 'instances.d', `${uuid}.json`), 'utf8')) as { task: string | null }).task;
  } catch {
    return null;
  }
}

async function restart(): Promise<Record<string, unknown>> {
  await agents.kill9(agent);
  agent = await agents.serving();
  return waitForLine(agent, (l) => l.msg === 'instances reconciled', 1000);
}

/** The queue of requests has nothing left: redeliveries have all been answered and acknowledged. */
async function requestsSettled(): Promise<void> {
  await waitUntil('compute.<host> empty', async () => (await client.depth(`novalet.compute.${host}`)) === 0, 60_000, 200);
}

/** Every answer an instance got to the request `requestId` named `event`: at least one, and all under the one id derived from the request's. */
function expectAnsweredOnce(uuid: string, event: string, requestId: string): void {
  const ids = client.events.filter((e) => e.routingKey === `instance.${uuid}.${event}`).map((e) => e.envelope.id);
  expect(ids.length, `${event} of ${uuid}`).toBeGreaterThan(0);
  expect(new Set(ids), `${event} of ${uuid}: repeats under the same id`).toEqual(new Set([answerId(requestId, event)]));
}

describe('kill -9 of novalet compute, and the restart', () => {
  const built: { uuid: string; id: string }[] = [];

  it('during builds: every build ends create.end, a repeated one under the same id, one QEMU each', async () => {
    for (let i = 0; i < 4; i++) {
      const uuid = randomUUID();
      built.push({ uuid, id: await client.send(host, 'build', kernelBuild(uuid, `k9b-${i}`)) });
    }
    await client.waitForEvent(built[0]!.uuid, 'create.start', 60_000);
    const reconciled = await restart();
    // The kill came mid-build: the restart found BUILDING records and builds them again from their requests.
    expect((reconciled.rebuild as string[]).length).toBeGreaterThan(0);
    for (const { uuid } of built) await client.waitFor(`${uuid} built`, () => client.events.find((e) => e.routingKey === `instance.${uuid}.create.end` || e.routingKey === `instance.${uuid}.create.error`), 180_000);
    await requestsSettled();
    const list = await client.list(host);
    for (const { uuid, id } of built) {
      expect(client.eventsOf(uuid)).not.toContain('create.error');
      expectAnsweredOnce(uuid, 'create.end', id);
      expect(list.filter((i) => i.uuid === uuid)).toEqual([expect.objectContaining({ state: 'active' })]);
      expect(await qemuOf(uuid)).toHaveLength(1);
    }
  }, 420_000);

  it('during power changes: every stop ends power.off and every start power.on, repeats under the same id, none refused', async () => {
    expect(built.length).toBe(4);
    for (const { uuid } of built) await guestReady(client, host, uuid);
    const stops = new Map<string, string>();
    for (const { uuid } of built) stops.set(uuid, await client.send(host, 'stop', { uuid }));
    await waitUntil('a stop under way on disk', () => built.some(({ uuid }) => taskOnDisk(uuid) === 'powering-off'), 60_000, 10);
    await restart();
    for (const { uuid } of built) await client.waitForEvent(uuid, 'power.off', 120_000);
    await requestsSettled();
    for (const { uuid } of built) {
      expectAnsweredOnce(uuid, 'power.off', stops.get(uuid)!);
      expect(client.eventsOf(uuid)).not.toContain('action.error');
      expect(await qemuOf(uuid)).toEqual([]);
    }
    expect((await client.list(host)).filter((i) => built.some((b) => b.uuid === i.uuid)).map((i) => i.state)).toEqual(['stopped', 'stopped', 'stopped', 'stopped']);

    const starts = new Map<string, string>();
    for (const { uuid } of built) starts.set(uuid, await client.send(host, 'start', { uuid }));
    // Killed once libvirt runs a starting guest's QEMU (its start job still under way). A kill in the first ~100 ms of
    // libvirt's start, before QEMU runs, is another case: compute-start-interrupted.test.ts.
    await waitUntil(
      'a start under way, its QEMU running',
      async () => {
        for (const { uuid } of built) if (taskOnDisk(uuid) === 'powering-on' && (await qemuOf(uuid)).length > 0) return true;
        return false;
      },
      60_000,
      10,
    );
    await restart();
    for (const { uuid } of built) await client.waitForEvent(uuid, 'power.on', 120_000);
    await requestsSettled();
    for (const { uuid } of built) {
      expectAnsweredOnce(uuid, 'power.on', starts.get(uuid)!);
      expect(client.eventsOf(uuid)).not.toContain('action.error');
      expect(await qemuOf(uuid)).toHaveLength(1);
    }
  }, 420_000);

  it('during deletes: every delete ends delete.end, under the same id when repeated, never INSTANCE_NOT_FOUND; no QEMU left', async () => {
    expect(built.length).toBe(4);
    const deletes = new Map<string, string>();
    for (const { uuid } of built) deletes.set(uuid, await client.send(host, 'delete', { uuid }));
    await waitUntil('a delete under way on disk', () => built.some(({ uuid }) => taskOnDisk(uuid) === 'deleting'), 60_000, 10);
    await restart();
    for (const { uuid } of built) await client.waitForEvent(uuid, 'delete.end', 120_000);
    await requestsSettled();
    // A delete the broker delivers again after all this (its ack lost with the process): delete.end again, same id.
    const [first] = built;
    const before = client.events.filter((e) => e.routingKey === `instance.${first!.uuid}.delete.end`).length;
    await client.send(host, 'delete', { uuid: first!.uuid }, deletes.get(first!.uuid));
    await client.waitFor('delete.end again', () => client.events.filter((e) => e.routingKey === `instance.${first!.uuid}.delete.end`).length > before, 60_000);
    await requestsSettled();
    const list = await client.list(host);
    for (const { uuid } of built) {
      expectAnsweredOnce(uuid, 'delete.end', deletes.get(uuid)!);
      expect(client.eventsOf(uuid)).not.toContain('action.error');
      expect(list.some((i) => i.uuid === uuid)).toBe(false);
      expect(await qemuOf(uuid)).toEqual([]);
    }
    expect(await agents.stop(agent)).toBe(0);
  }, 420_000);
});
