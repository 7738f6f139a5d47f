/**
 * `novalet compute` as operators run it: a real process on real libvirt
 * and QEMU (TCG), a private RabbitMQ on 127.0.0.1, the test guest. A build
 * from Python's pika following docs/messages.md; the HTTP API; `kill -9`
 * during concurrent builds and the restart that finishes them; a broker
 * restart during builds; SIGTERM with a build in flight. Every instance ends
 * ACTIVE (or ERROR) exactly once and no QEMU is left behind.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LibvirtConnection } from '../../hypervisor/libvirt/connection.js';
import { prepareEmbeddedRoot } from '../../hypervisor/libvirt/embedded-root.js';
import { buildTestGuest, TEST_GUEST_DIR } from '../guest/test-guest.js';
import { processesMentioning } from '../libvirt/libvirt-test-support.js';
import { answerId } from '../../service/message-ids.js';
import { BusClient } from '../support/bus-client.js';
import { startRabbitMq, type RabbitMqHandle } from '../support/rabbitmq.js';
import { freePort, startComputeAgent, testGuestBuild, type ComputeAgent } from '../support/compute-agent.js';
import { NOVALET } from '../support/run-novalet.js';

/** A root of its own that outlives the run, so that libvirt's QEMU probe is paid once per machine. */
const ROOT = '/var/tmp/novalet-test-compute';
const PIKA_BUILD = path.join(import.meta.dirname, 'pika_build.py');
const CMDLINE = 'console=ttyS0 novalet.name=svc';

let rabbit: RabbitMqHandle;
let stateDir: string;
let configFile: string;
let apiPort: number;
/** The HTTP API's bearer token, read from the file the service made at its first start ([api] auth_token_file). */
let auth: RequestInit;
const host = `it-${randomUUID().slice(0, 8)}`;

type Agent = ComputeAgent;

/** Agents started by this file: one lives across several tests, so run-novalet's per-test clean-up is not for it. */
const agents = new Set<ChildProcess>();

function startAgent(env: NodeJS.ProcessEnv = {}): Agent {
  const agent = startComputeAgent(configFile, { program: NOVALET, env });
  agents.add(agent.child);
  agent.child.on('close', () => agents.delete(agent.child));
  void agent.exited.then((code) => {
    if (code !== 0 && code !== null) console.error(`novalet compute exited ${code}: ${agent.stderr()}`);
  });
  return agent;
}

async function serving(agent: Agent, timeoutMs = 90_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!agent.lines.some((l) => l.msg === 'novalet compute is serving')) {
    if (agent.child.exitCode !== null || agent.child.signalCode !== null) throw new Error(`novalet compute exited ${agent.child.exitCode} before serving: ${JSON.stringify(agent.lines.slice(-5))}`);
    if (Date.now() > deadline) throw new Error(`novalet compute did not serve in ${timeoutMs} ms: ${JSON.stringify(agent.lines.slice(-5))}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function kernelBuild(uuid: string, name: string) {
  return testGuestBuild(uuid, name, { memoryMb: 128, cmdline: CMDLINE });
}

async function qemuOf(uuid: string): Promise<string[]> {
  return (await processesMentioning(uuid)).filter((line) => line.includes('qemu-system'));
}

/** Removes every domain left in the root (the service leaves guests running when it stops). */
async function destroyAllDomains(): Promise<void> {
  const connection = await LibvirtConnection.open(await prepareEmbeddedRoot(ROOT));
  try {
    for (const domain of await connection.listAllDomains()) await domain.remove().finally(() => domain.free());
  } finally {
    await connection.close();
  }
}

beforeAll(async () => {
  expect(buildTestGuest().status).toBe(0);
  rabbit = await startRabbitMq();
  stateDir = mkdtempSync('/tmp/nvc-');
  apiPort = await freePort();
  configFile = path.join(stateDir, 'novalet.conf');
  writeFileSync(
    configFile,
    [
      '[DEFAULT]',
      `host = ${host}`,
      `state_path = ${stateDir}`,
      `transport_url = ${rabbit.url.replace(/^amqp:/, 'rabbit:')}`,
      'report_interval = 2',
      'graceful_shutdown_timeout = 30',
      '[libvirt]',
      // Instances run under TCG on any host; the KVM judgement has tests of its own.
      'virt_type = qemu',
      `connection_uri = qemu:///embed?root=${ROOT}`,
      '[compute]',
      `image_dir = ${TEST_GUEST_DIR}`,
      '[api]',
      `port = ${apiPort}`,
      '[oslo_messaging_rabbit]',
      'rabbit_retry_interval = 1',
      'rabbit_interval_max = 2',
    ].join('\n'),
  );
}, 180_000);

afterAll(async () => {
  // An agent a failed test left: stopped as systemd would, then killed.
  for (const child of agents) child.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, agents.size > 0 ? 5000 : 0));
  for (const child of agents) {
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      // Gone.
    }
  }
  await destroyAllDomains().catch((err: unknown) => console.error(err));
  await rabbit?.stop();
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
  expect(await processesMentioning(ROOT)).toEqual([]);
}, 120_000);

describe('novalet compute', () => {
  let agent: Agent;
  let client: BusClient;

  it('starts, logging each start-up step with its duration, tells systemd READY=1 once consuming, and serves the HTTP API', async () => {
    // systemd's notification socket, stood in for by a receiver of our own (this machine's PID 1 is not systemd).
    const socketPath = path.join(stateDir, 'notify.sock');
    const receiver = spawn('/usr/bin/python3', [path.join(import.meta.dirname, '../support/notify-receiver.py'), socketPath, '120'], { stdio: ['ignore', 'pipe', 'inherit'] });
    let notified = '';
    receiver.stdout.on('data', (d: Buffer) => (notified += d.toString()));
    try {
      for (let i = 0; i < 100 && !notified.includes('bound'); i++) await new Promise((r) => setTimeout(r, 50));
      agent = startAgent({ NOTIFY_SOCKET: socketPath });
      await serving(agent);
      for (let i = 0; i < 50 && !notified.includes('READY=1'); i++) await new Promise((r) => setTimeout(r, 100));
      expect(notified).toContain('READY=1');
      expect(notified).toMatch(/STATUS=serving compute\./);
    } finally {
      receiver.kill('SIGTERM');
    }
    const steps = agent.lines.filter((l) => typeof l.step === 'string');
    expect(steps.map((l) => l.step)).toEqual(expect.arrayContaining(['configuration', expect.stringMatching(/^host/), expect.stringMatching(/reconcile/), 'broker connection']));
    for (const s of steps) expect(typeof s.ms).toBe('number');
    const health = await fetch(`http://127.0.0.1:${apiPort}/healthz`);
    expect(health.status).toBe(200);
    // The token: made at the first start in $state_path/api-token, mode 0600; every route but /healthz and /metrics wants it.
    const tokenFile = path.join(stateDir, 'api-token');
    expect(statSync(tokenFile).mode & 0o777).toBe(0o600);
    auth = { headers: { authorization: `Bearer ${readFileSync(tokenFile, 'utf8').trim()}` } };
    expect((await fetch(`http://127.0.0.1:${apiPort}/v1/host`)).status).toBe(401);
    const hostView = (await (await fetch(`http://127.0.0.1:${apiPort}/v1/host`, auth)).json()) as Record<string, unknown>;
    expect(hostView).toMatchObject({ host, effective_virt_type: 'qemu' });
    // No password in any log line, at any level.
    expect(agent.lines.map((l) => JSON.stringify(l)).join('\n')).not.toContain('guest:guest');
    client = await BusClient.connect(rabbit.url);
  }, 120_000);

  it('builds what Python\'s pika sends following docs/messages.md, and the guest reaches its marker', async () => {
    const uuid = randomUUID();
    const run = spawn('/usr/bin/python3', [PIKA_BUILD, rabbit.url, host, uuid, 'vmlinuz', 'initramfs.cpio.gz', CMDLINE], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    run.stdout.on('data', (d: Buffer) => (out += d.toString()));
    run.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const code = await new Promise<number | null>((resolve) => run.on('close', resolve));
    expect({ code, err, out }).toEqual({ code: 0, err: '', out: expect.stringContaining('"step": "marker"') });
    expect(out).toMatch(/"step": "marker", "line": "NOVALET-TEST-GUEST-READY name=svc/);
    const view = (await (await fetch(`http://127.0.0.1:${apiPort}/v1/instances/${uuid}`, auth)).json()) as Record<string, unknown>;
    expect(view).toMatchObject({ uuid, name: 'pika-1', state: 'active', task: null, host, virt_type: 'qemu', fault: null });
    expect(String(view.virt_type_reason)).toContain('TCG');
    const console = await fetch(`http://127.0.0.1:${apiPort}/v1/instances/${uuid}/console?lines=20`, auth);
    expect(console.headers.get('content-type')).toMatch(/^text\/plain/);
    expect(await console.text()).toContain('NOVALET-TEST-GUEST-READY');
    const metrics = await (await fetch(`http://127.0.0.1:${apiPort}/metrics`)).text();
    expect(metrics).toMatch(/^novalet_builds_total 1$/m);
    expect(metrics).toMatch(/^novalet_broker_connected 1$/m);
    expect(await qemuOf(uuid)).toHaveLength(1);
  }, 180_000);

  it('the same message delivered twice, and the same instance under a second message id: one guest, each message answered (the repeat under the same id)', async () => {
    const uuid = randomUUID();
    const id = randomUUID();
    await client.send(host, 'build', kernelBuild(uuid, 'twice'), id);
    await client.send(host, 'build', kernelBuild(uuid, 'twice'), id);
    const second = await client.send(host, 'build', kernelBuild(uuid, 'twice'));
    // The second message waits for the build's lock, so its answer comes after the build's; a loaded machine may take a while.
    await client.waitFor(`the second message's create.end`, () => client.events.find((e) => e.envelope.id === answerId(second, 'create.end')), 60_000);
    for (let i = 0; i < 50 && (await client.depth(`novalet.compute.${host}`)) > 0; i++) await new Promise((r) => setTimeout(r, 100));
    // Time for anything further (a second guest, a second create.start) to show, were there any.
    await new Promise((r) => setTimeout(r, 1000));
    expect((await client.list(host)).filter((i) => i.uuid === uuid)).toHaveLength(1);
    // Dropping repeats by id, as docs/messages.md tells consumers: the build's start and end, and the second message's own answer.
    const byId = new Map(client.events.filter((e) => e.envelope.body.uuid === uuid).map((e) => [e.envelope.id, e.envelope.body.event]));
    expect([...byId]).toEqual([
      [answerId(id, 'create.start'), 'create.start'],
      [answerId(id, 'create.end'), 'create.end'],
      [answerId(second, 'create.end'), 'create.end'],
    ]);
    expect(await qemuOf(uuid)).toHaveLength(1);
  }, 120_000);

  it('kill -9 during concurrent builds, then a restart: each instance ends ACTIVE exactly once, no QEMU doubled or orphaned', async () => {
    const uuids = [randomUUID(), randomUUID(), randomUUID()];
    for (const [i, uuid] of uuids.entries()) await client.send(host, 'build', kernelBuild(uuid, `k9-${i}`));
    await client.waitForEvent(uuids[0]!, 'create.start');
    process.kill(-agent.child.pid!, 'SIGKILL');
    await agent.exited;
    agent = startAgent();
    await serving(agent);
    // The kill came mid-build: the restart found at least one BUILDING record to finish.
    const reconciled = agent.lines.find((l) => l.msg === 'instances reconciled') as { rebuild: string[] } | undefined;
    expect(reconciled?.rebuild.length).toBeGreaterThan(0);
    for (const uuid of uuids) await client.waitFor(`${uuid} built`, () => client.events.find((e) => e.routingKey === `instance.${uuid}.create.end` || e.routingKey === `instance.${uuid}.create.error`), 120_000);
    // Redeliveries settle: nothing is left in the queue.
    for (let i = 0; i < 100 && (await client.depth(`novalet.compute.${host}`)) > 0; i++) await new Promise((r) => setTimeout(r, 200));
    expect(await client.depth(`novalet.compute.${host}`)).toBe(0);
    const list = await client.list(host);
    for (const uuid of uuids) {
      expect(list.filter((i) => i.uuid === uuid)).toEqual([expect.objectContaining({ uuid, state: 'active' })]);
      expect(client.eventsOf(uuid).filter((e) => e === 'create.end')).toHaveLength(1);
      expect(await qemuOf(uuid)).toHaveLength(1);
    }
    const full = await client.waitFor('a full report after the restart', () =>
      client.reports(host).filter((r) => r.envelope.body.report === 'full').find((r) => uuids.every((u) => (r.envelope.body.instances as { uuid: string }[]).some((i) => i.uuid === u))),
    );
    const instances = full.envelope.body.instances as { uuid: string }[];
    expect(new Set(instances.map((i) => i.uuid)).size).toBe(instances.length);
  }, 300_000);

  it('a broker restart during builds: nothing lost, the agent reconnects by itself and reports again', async () => {
    const uuids = [randomUUID(), randomUUID()];
    for (const [i, uuid] of uuids.entries()) await client.send(host, 'build', kernelBuild(uuid, `br-${i}`));
    await client.close();
    await rabbit.restart();
    client = await BusClient.connect(rabbit.url);
    await new Promise((r) => setTimeout(r, 500));
    const reconnected = await waitForLine(agent, (l) => typeof l.msg === 'string' && /Reconnected to AMQP server on 127\.0\.0\.1:\d+/.test(l.msg), 60_000);
    expect(reconnected).toBeTruthy();
    await client.waitFor('a report after the reconnection', () => client.reports(host)[0], 30_000);
    const deadline = Date.now() + 120_000;
    let list: { uuid: string; state: string }[] = [];
    while (Date.now() < deadline) {
      list = await client.list(host);
      if (uuids.every((u) => list.some((i) => i.uuid === u && i.state === 'active'))) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    for (const uuid of uuids) {
      expect(list.filter((i) => i.uuid === uuid)).toEqual([expect.objectContaining({ state: 'active' })]);
      expect(await qemuOf(uuid)).toHaveLength(1);
    }
    expect((await fetch(`http://127.0.0.1:${apiPort}/healthz`)).status).toBe(200);
  }, 300_000);

  it('SIGTERM with a build in flight: the build is not lost, the guests keep running, exit 0', async () => {
    const running = await client.list(host);
    const uuid = randomUUID();
    await client.send(host, 'build', kernelBuild(uuid, 'term'));
    await client.waitForEvent(uuid, 'create.start');
    agent.child.kill('SIGTERM');
    expect(await agent.exited).toBe(0);
    for (const r of running) expect(await qemuOf(r.uuid)).toHaveLength(1);
    agent = startAgent();
    await serving(agent);
    const shown = await client.call(host, 'show', { uuid });
    expect(shown).toMatchObject({ ok: true, result: { state: 'active' } });
    expect(await qemuOf(uuid)).toHaveLength(1);
    // Clean up through the bus: deletes, then the agent stops.
    const all = await client.list(host);
    for (const r of all) await client.send(host, 'delete', { uuid: r.uuid });
    for (const r of all) await client.waitForEvent(r.uuid, 'delete.end', 60_000);
    agent.child.kill('SIGTERM');
    expect(await agent.exited).toBe(0);
    await client.close();
    for (const r of all) expect(await qemuOf(r.uuid)).toEqual([]);
  }, 300_000);
});

async function waitForLine(agent: Agent, match: (l: Record<string, unknown>) => boolean, timeoutMs: number): Promise<Record<string, unknown>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = agent.lines.find(match);
    if (found) return found;
    if (Date.now() > deadline) throw new Error(`no such log line in ${timeoutMs} ms; last: ${JSON.stringify(agent.lines.slice(-5))}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
