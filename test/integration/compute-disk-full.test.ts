/**
 * A full disk under a real `novalet compute` (real libvirt and QEMU under
 * TCG, a private RabbitMQ): its state_path and instances_path on a small
 * tmpfs, filled to the last byte while an instance runs (issue 16, trial
 * point 4). Every request is still answered: stop and delete with
 * `action.error` DISK_FULL naming the file system's folder and what to do
 * (the guest keeps running), a build with `create.error` DISK_FULL and a
 * remedy; /healthz says degraded (200) with the reason; no temporary file is
 * left among the records. Once space is freed, the same requests work.
 *
 * Before issue 16 (ef5a7f7) this fails: stop and delete only logged a WARN
 * (INTERNAL, ENOSPC) and sent nothing, a build failed INTERNAL with an
 * empty remedy, /healthz said ok, and empty *.tmp files were left.
 */
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { answerId } from '../../service/message-ids.js';
import { buildTestGuest } from '../guest/test-guest.js';
import { BusClient } from '../support/bus-client.js';
import { freePort, type ComputeAgent } from '../support/compute-agent.js';
import { startRabbitMq, type RabbitMqHandle } from '../support/rabbitmq.js';
import { mountSmallFileSystem, type SmallFileSystem } from '../support/small-filesystem.js';
import { Agents, destroyAllDomains, expectNothingLeft, guestReady, httpApi, kernelBuild, qemuOf, waitUntil, writeComputeConfig } from './compute-fixture.js';

const ROOT = '/var/tmp/novalet-test-faults-disk';
const host = `disk-${randomUUID().slice(0, 8)}`;

let rabbit: RabbitMqHandle;
let fs: SmallFileSystem;
let configDir: string;
let configFile: string;
let statePath: string;
let apiPort: number;
let agents: Agents;
let agent: ComputeAgent;
let client: BusClient;

beforeAll(async () => {
  expect(buildTestGuest().status).toBe(0);
  rabbit = await startRabbitMq();
  // Room for one instance of the test guest (its kernel and initramfs are copied into its folder) and the records.
  fs = mountSmallFileSystem(48 * 1024);
  statePath = path.join(fs.dir, 'state');
  configDir = mkdtempSync('/tmp/nvl-disk-');
  configFile = path.join(configDir, 'novalet.conf');
  apiPort = await freePort();
  writeComputeConfig(configFile, {
    host,
    statePath,
    transportUrl: rabbit.transportUrl,
    apiPort,
    root: ROOT,
    sections: { DEFAULT: [`instances_path = ${path.join(fs.dir, 'instances')}`] },
  });
  agents = new Agents(configFile);
  agent = await agents.serving();
  client = await BusClient.connect(rabbit.url);
}, 240_000);

afterAll(async () => {
  await client?.close();
  await agents?.stopAll();
  await destroyAllDomains(ROOT).catch((err: unknown) => console.error(err));
  fs?.unmount();
  await rabbit?.stop();
  if (configDir) rmSync(configDir, { recursive: true, force: true });
  await expectNothingLeft(configFile, ROOT, rabbit?.dir);
}, 120_000);

async function health(): Promise<{ code: number; body: { status: string; reasons: string[] } }> {
  const response = await httpApi(statePath, apiPort).get('/healthz');
  return { code: response.status, body: (await response.json()) as { status: string; reasons: string[] } };
}

/** Temporary files among the records and the outbox's entries. */
function temporaryFiles(): string[] {
  return ['instances.d', 'outbox.d'].flatMap((dir) => (existsSync(path.join(statePath, dir)) ? readdirSync(path.join(statePath, dir)).filter((n) => n.endsWith('.tmp')) : []));
}

describe('a full disk under novalet compute', () => {
  const running = randomUUID();

  it('with the file system full: stop, delete and build are each answered DISK_FULL naming the folder and the remedy; the guest keeps running; /healthz degraded', async () => {
    await client.send(host, 'build', kernelBuild(running, 'disk-0'));
    await client.waitForEvent(running, 'create.end', 120_000);
    // Booted before the disk fills (its console is written there too), so that the stop after it is a clean one.
    await guestReady(client, host, running);
    expect((await health()).body.status).toBe('ok');
    fs.fill();

    const stop = await client.send(host, 'stop', { uuid: running });
    const stopError = await client.waitForEvent(running, 'action.error', 60_000);
    expect(stopError.envelope.id).toBe(answerId(stop, 'action.error'));
    expect(stopError.envelope.body).toMatchObject({ action: 'stop', state: 'active', fault: { code: 'DISK_FULL' } });
    const stopFault = stopError.envelope.body.fault as { message: string; remedy: string };
    expect(stopFault.message).toContain(fs.dir);
    expect(stopFault.remedy).toMatch(/Free space/);
    expect(await qemuOf(running)).toHaveLength(1);

    const del = await client.send(host, 'delete', { uuid: running });
    await client.waitFor('the delete answered', () => client.events.find((e) => e.envelope.id === answerId(del, 'action.error')), 60_000);
    const deleteError = client.events.find((e) => e.envelope.id === answerId(del, 'action.error'))!;
    expect(deleteError.envelope.body).toMatchObject({ action: 'delete', fault: { code: 'DISK_FULL' } });
    expect((deleteError.envelope.body.fault as { message: string }).message).toContain(fs.dir);
    expect(await qemuOf(running)).toHaveLength(1);

    const refused = randomUUID();
    await client.send(host, 'build', kernelBuild(refused, 'disk-1'));
    const buildError = await client.waitForEvent(refused, 'create.error', 60_000);
    expect(buildError.envelope.body).toMatchObject({ will_retry: false, fault: { code: 'DISK_FULL' } });
    expect((buildError.envelope.body.fault as { remedy: string }).remedy.length).toBeGreaterThan(0);
    expect(await qemuOf(refused)).toEqual([]);

    const degraded = await health();
    expect(degraded.code).toBe(200);
    expect(degraded.body.status).toBe('degraded');
    expect(degraded.body.reasons.join(' ')).toMatch(/full/);
    expect(temporaryFiles()).toEqual([]);
    // Every request was acknowledged: nothing waits in the queue to be tried again.
    await waitUntil('the requests acknowledged', async () => (await client.depth(`novalet.compute.${host}`)) === 0, 30_000, 200);
    const shown = await client.call(host, 'show', { uuid: running });
    expect(shown).toMatchObject({ ok: true, result: { state: 'active' } });
  }, 300_000);

  it('once space is freed: stop, start, delete and build work again, and /healthz is ok', async () => {
    fs.free();
    const stop = await client.send(host, 'stop', { uuid: running });
    await client.waitFor('power.off', () => client.events.find((e) => e.envelope.id === answerId(stop, 'power.off')), 120_000);
    expect(await qemuOf(running)).toEqual([]);
    const start = await client.send(host, 'start', { uuid: running });
    await client.waitFor('power.on', () => client.events.find((e) => e.envelope.id === answerId(start, 'power.on')), 60_000);
    const del = await client.send(host, 'delete', { uuid: running });
    await client.waitFor('delete.end', () => client.events.find((e) => e.envelope.id === answerId(del, 'delete.end')), 60_000);
    expect(await qemuOf(running)).toEqual([]);
    const again = randomUUID();
    await client.send(host, 'build', kernelBuild(again, 'disk-2'));
    await client.waitForEvent(again, 'create.end', 120_000);
    const del2 = await client.send(host, 'delete', { uuid: again });
    await client.waitFor('delete.end', () => client.events.find((e) => e.envelope.id === answerId(del2, 'delete.end')), 60_000);
    expect(await health()).toEqual({ code: 200, body: { status: 'ok', reasons: [] } });
    expect(temporaryFiles()).toEqual([]);
    expect(await agents.stop(agent)).toBe(0);
  }, 300_000);
});
