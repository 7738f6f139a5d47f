/**
 * A real `novalet compute` (real libvirt and QEMU under TCG, a private
 * RabbitMQ) as an operator meets it after issue 16's trial:
 *
 * - one unreadable record file (trial point 5) does not stop the host: it
 *   starts, lists, reports and builds; the file is moved aside and /healthz
 *   says degraded naming it. Before (ef5a7f7) list and /v1/instances failed
 *   with 500, reports stopped and builds were dead-lettered HANDLER_FAILED.
 *   It also declares novalet.scheduler, where its reschedules go (trial
 *   point 3: before, nobody declared it and reschedules vanished).
 * - a delete of an instance whose image download trickles for ever (trial
 *   point 7) ends the build at once (create.error
 *   INSTANCE_DELETED_DURING_BUILD) and answers delete.end; before, the
 *   delete waited for the build, which held its slot for
 *   image_download_timeout (3600 s).
 * - the metrics agree (trial point 12): refused builds are builds, so
 *   failures never exceed builds; deletes and guest crashes are counted.
 *   Before, refused builds were failures only and nothing counted deletes or
 *   crashes.
 * - SIGHUP (trial point 10) re-reads the configuration and the service keeps
 *   serving: a changed ram_allocation_ratio shows in the next full report,
 *   the change is logged as oslo does, an immutable one is logged as
 *   needing a restart. Before, SIGHUP ended the process.
 * - kill -9 of the process an operator started (trial point 9) ends the
 *   service: its relaunched child does not go on serving.
 */
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { answerId } from '../../service/message-ids.js';
import { buildTestGuest, TEST_GUEST_DIR } from '../guest/test-guest.js';
import { processesMentioning } from '../libvirt/libvirt-test-support.js';
import { BusClient } from '../support/bus-client.js';
import { freePort, type ComputeAgent } from '../support/compute-agent.js';
import { startImageServer, type ImageServer } from '../support/image-server.js';
import { parseExposition, type Family } from '../support/prometheus-exposition.js';
import { startRabbitMq, type RabbitMqHandle } from '../support/rabbitmq.js';
import { Agents, CMDLINE, destroyAllDomains, expectNothingLeft, httpApi, kernelBuild, qemuOf, waitForLine, waitUntil, writeComputeConfig, type ComputeConfigOptions } from './compute-fixture.js';

const ROOT = '/var/tmp/novalet-test-faults-operator';
const host = `oper-${randomUUID().slice(0, 8)}`;
/** The record file that cannot be read, there before the service starts. */
const garbled = randomUUID();

let rabbit: RabbitMqHandle;
let images: ImageServer;
let stateDir: string;
let configFile: string;
let config: ComputeConfigOptions;
let apiPort: number;
let agents: Agents;
let agent: ComputeAgent;
let client: BusClient;

function configWith(extra: { DEFAULT?: string[]; api?: string[] } = {}): ComputeConfigOptions {
  return {
    host,
    statePath: stateDir,
    transportUrl: rabbit.transportUrl,
    apiPort,
    root: ROOT,
    sections: {
      DEFAULT: ['ram_allocation_ratio = 1.5', 'image_download_min_rate = 0', ...(extra.DEFAULT ?? [])],
      // The image server is on loopback, on a port of its own.
      import_filtering_opts: ['allowed_hosts = 127.0.0.1', 'allowed_ports ='],
      ...(extra.api ? { api: extra.api } : {}),
    },
  };
}

beforeAll(async () => {
  expect(buildTestGuest().status).toBe(0);
  rabbit = await startRabbitMq();
  images = await startImageServer();
  stateDir = mkdtempSync('/tmp/nvl-oper-');
  configFile = path.join(stateDir, 'novalet.conf');
  apiPort = await freePort();
  config = configWith();
  writeComputeConfig(configFile, config);
  mkdirSync(path.join(stateDir, 'instances.d'), { recursive: true });
  writeFileSync(path.join(stateDir, 'instances.d', `${garbled}.json`), '{"uuid": "half a record');
  agents = new Agents(configFile);
  client = await BusClient.connect(rabbit.url);
  agent = await agents.serving();
}, 240_000);

afterAll(async () => {
  await client?.close();
  await agents?.stopAll();
  await destroyAllDomains(ROOT).catch((err: unknown) => console.error(err));
  await images?.close();
  await rabbit?.stop();
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
  await expectNothingLeft(configFile, ROOT, rabbit?.dir);
}, 120_000);

const api = () => httpApi(stateDir, apiPort);

async function metrics(): Promise<Map<string, Family>> {
  return parseExposition(await (await api().get('/metrics')).text());
}

/** A counter's value summed over its labels (0 when it has no series yet). */
function total(families: Map<string, Family>, name: string): number {
  return (families.get(name)?.samples ?? []).filter((s) => s.name === name).reduce((n, s) => n + s.value, 0);
}

describe('novalet compute as an operator meets it', () => {
  let built: string;

  it('one unreadable record: the service starts, lists, reports and builds; the file is moved aside and /healthz says degraded naming it', async () => {
    const file = path.join(stateDir, 'instances.d', `${garbled}.json`);
    expect(existsSync(file)).toBe(false);
    const aside = readdirSync(path.join(stateDir, 'instances.d', 'unreadable'));
    expect(aside).toEqual([expect.stringMatching(new RegExp(`^${garbled}\\.json\\.`))]);
    expect(readFileSync(path.join(stateDir, 'instances.d', 'unreadable', aside[0]!), 'utf8')).toBe('{"uuid": "half a record');
    expect(agent.lines.some((l) => l.level === 50 && typeof l.msg === 'string' && l.msg.includes(file))).toBe(true);

    const health = await api().get('/healthz');
    expect(health.status).toBe(200);
    const body = (await health.json()) as { status: string; reasons: string[] };
    expect(body.status).toBe('degraded');
    expect(body.reasons.join(' ')).toContain(file);
    expect((await api().get('/v1/instances')).status).toBe(200);
    expect(await client.list(host)).toEqual([]);
    // The compute host declares the schedulers' queue, which its reschedules go to (trial point 3): nothing else here does.
    expect(await client.depth('novalet.scheduler')).toBe(0);

    // Reports keep coming: the schedulers do not mark the host down.
    const seen = client.reports(host).length;
    await client.waitFor('two more reports', () => client.reports(host).length >= seen + 2, 30_000);

    built = randomUUID();
    const id = await client.send(host, 'build', kernelBuild(built, 'oper-0'));
    const end = await client.waitForEvent(built, 'create.end', 120_000);
    expect(end.envelope.id).toBe(answerId(id, 'create.end'));
    expect((await api().json<{ instances: { uuid: string }[] }>('/v1/instances')).instances.map((i) => i.uuid)).toEqual([built]);
    const families = await metrics();
    expect(families.get('novalet_unreadable_records')?.samples[0]?.value).toBe(1);
  }, 300_000);

  it('a delete of an instance whose image download trickles for ever: the build ends at once with create.error INSTANCE_DELETED_DURING_BUILD, then delete.end', async () => {
    // A byte every half second with image_download_min_rate off: this download would never end by itself.
    const initramfs = readFileSync(path.join(TEST_GUEST_DIR, 'initramfs.cpio.gz'));
    images.add('slow.cpio.gz', { content: initramfs, trickle: { bytes: 1, everyMs: 500 } });
    const uuid = randomUUID();
    const body = kernelBuild(uuid, 'oper-slow');
    const build = {
      instance: { ...body.instance, image: { kernel: { name: 'vmlinuz' }, ramdisk: { url: images.url('slow.cpio.gz'), checksum: `sha256:${'0'.repeat(64)}` }, cmdline: CMDLINE, properties: {} } },
    };
    const buildId = await client.send(host, 'build', build);
    await client.waitForEvent(uuid, 'create.start', 60_000);
    await waitUntil('the download under way', () => images.inFlight() === 1, 60_000);
    const deleteId = await client.send(host, 'delete', { uuid });
    await client.waitForEvent(uuid, 'delete.end', 60_000);
    expect(client.eventsOf(uuid)).toEqual(['create.start', 'create.error', 'delete.end']);
    const error = await client.waitForEvent(uuid, 'create.error');
    expect(error.envelope.id).toBe(answerId(buildId, 'create.error'));
    expect(error.envelope.body).toMatchObject({ will_retry: false, fault: { code: 'INSTANCE_DELETED_DURING_BUILD' } });
    expect((await client.waitForEvent(uuid, 'delete.end')).envelope.id).toBe(answerId(deleteId, 'delete.end'));
    // The download was dropped, not finished.
    await waitUntil('the download abandoned', () => images.abandoned.includes('/slow.cpio.gz'), 30_000);
    expect(images.inFlight()).toBe(0);
    expect(await qemuOf(uuid)).toEqual([]);
  }, 180_000);

  it('the metrics agree: refused builds are builds (failures never exceed builds), deletes and a guest crash are counted', async () => {
    const before = await metrics();
    const refused = [randomUUID(), randomUUID(), randomUUID()];
    for (const uuid of refused) {
      const body = kernelBuild(uuid, 'oper-big');
      body.instance.flavor.memory_mb = 1024 * 1024;
      await client.send(host, 'build', body);
    }
    for (const uuid of refused) expect((await client.waitForEvent(uuid, 'create.error', 60_000)).envelope.body).toMatchObject({ fault: { code: 'INSUFFICIENT_RESOURCES' } });

    // The guest's QEMU dies under it: a crash, ERROR with power.off.
    const [qemu] = await qemuOf(built);
    process.kill(Number(qemu!.split(' ')[0]), 'SIGKILL');
    const crashed = await client.waitForEvent(built, 'power.off', 60_000);
    expect(crashed.envelope.body).toMatchObject({ state: 'error', fault: { code: 'GUEST_CRASHED' } });
    await client.send(host, 'delete', { uuid: built });
    await client.waitForEvent(built, 'delete.end', 60_000);

    const after = await metrics();
    const builds = total(after, 'novalet_builds_total');
    const failures = total(after, 'novalet_build_failures_total');
    expect(failures).toBeLessThanOrEqual(builds);
    expect(builds - total(before, 'novalet_builds_total')).toBe(refused.length);
    expect(failures - total(before, 'novalet_build_failures_total')).toBe(refused.length);
    // Over the file: the build, the one deleted during its download and the three refused.
    expect(builds).toBe(5);
    expect(after.get('novalet_build_failures_total')!.samples.map((s) => [s.labels.code, s.value]).sort()).toEqual([
      ['INSTANCE_DELETED_DURING_BUILD', 1],
      ['INSUFFICIENT_RESOURCES', 3],
    ]);
    expect(total(after, 'novalet_deletes_total')).toBe(2);
    expect(total(after, 'novalet_guest_crashes_total')).toBe(1);
  }, 180_000);

  it('SIGHUP: the configuration is read again and the service keeps serving; a changed allocation ratio shows in the next full report; [api] port needs a restart', async () => {
    writeComputeConfig(configFile, configWith({ DEFAULT: ['ram_allocation_ratio = 3.0'], api: [`port = ${await freePort()}`] }));
    const hangUp = Date.now();
    agent.child.kill('SIGHUP');
    await waitForLine(agent, (l) => l.msg === 'Caught SIGHUP, handling', 30_000);
    const changed = await waitForLine(agent, (l) => typeof l.msg === 'string' && l.msg.startsWith('Option DEFAULT.ram_allocation_ratio changed'), 30_000);
    expect(changed.msg).toMatch(/from \[1\.5\] to \[3(\.0)?\]/);
    const ignored = await waitForLine(agent, (l) => typeof l.msg === 'string' && l.msg.startsWith('Ignoring change to immutable option api.port'), 30_000);
    expect(ignored.msg).toMatch(/restart/);
    const report = await client.waitFor(
      'a full report with the new ratio',
      () => client.reports(host).find((r) => r.envelope.body.report === 'full' && Date.parse(r.envelope.sent_at) >= hangUp - 1000 && r.envelope.body.ram_allocation_ratio === 3),
      30_000,
    );
    expect(report.envelope.body.ram_allocation_ratio).toBe(3);
    expect(agent.child.exitCode).toBeNull();
    // Still serving, on the port it started with.
    expect((await api().get('/healthz')).status).toBe(200);
    const uuid = randomUUID();
    await client.send(host, 'build', kernelBuild(uuid, 'oper-hup'));
    await client.waitForEvent(uuid, 'create.end', 120_000);
    await client.send(host, 'delete', { uuid });
    await client.waitForEvent(uuid, 'delete.end', 60_000);
  }, 240_000);

  it('kill -9 of the process an operator started: the service ends, its relaunched child with it', async () => {
    const pids = (await processesMentioning(configFile)).map((line) => Number(line.split(' ')[0]));
    // The process started and the one it relaunched (fork safety, hypervisor/libvirt/fork-safety.ts).
    expect(pids).toContain(agent.child.pid);
    process.kill(agent.child.pid!, 'SIGKILL');
    await agent.exited;
    await waitUntil('no novalet compute left', async () => (await processesMentioning(configFile)).length === 0, 30_000, 200);
  }, 60_000);
});
