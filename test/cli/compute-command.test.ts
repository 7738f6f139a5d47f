/**
 * `novalet compute` as a command: bad configuration is one line and exit 2
 * before anything starts; a start-up step that fails says which and exits
 * 1; SIGTERM while the broker is unreachable (the agent retries forever)
 * ends it with 0 and nothing left behind.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TEST_GUEST_DIR } from '../guest/test-guest.js';
import { runNovalet, startNovalet } from '../support/run-novalet.js';

/** A root of its own (one process may hold a root; the integration test has another). */
const ROOT = '/var/tmp/novalet-test-compute-cli';
let dir: string;
let taken: Server;
let takenPort: number;

beforeAll(async () => {
  dir = mkdtempSync('/tmp/nvcc-');
  taken = createServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
  takenPort = (taken.address() as { port: number }).port;
});

afterAll(async () => {
  await new Promise((resolve) => taken.close(resolve));
  rmSync(dir, { recursive: true, force: true });
});

function conf(name: string, lines: string[]): string {
  const file = path.join(dir, name);
  writeFileSync(
    file,
    ['[DEFAULT]', `state_path = ${path.join(dir, name.replace('.conf', ''))}`, 'host = cli-test', ...lines.filter((l) => !l.startsWith('[')), '[libvirt]', 'virt_type = qemu', `connection_uri = qemu:///embed?root=${ROOT}`, `kvm_selftest_guest_dir = ${TEST_GUEST_DIR}`, ...sectioned(lines)].join('\n'),
  );
  return file;
}

/** Lines after a `[section]` header stay in it. */
function sectioned(lines: string[]): string[] {
  const first = lines.findIndex((l) => l.startsWith('['));
  return first < 0 ? [] : lines.slice(first);
}

describe('novalet compute', () => {
  it('--help says what it does and exits 0', async () => {
    const run = await runNovalet(['compute', '--help']);
    expect(run.status).toBe(0);
    expect(run.stdout).toContain('usage: novalet compute');
  });

  it('a transport_url it cannot use is one line naming the option, the password masked, exit 2', async () => {
    const run = await runNovalet(['compute', '--config-file', conf('bad-url.conf', ['transport_url = ftp://nova:Sekret99@broker:5672/'])]);
    expect(run.status).toBe(2);
    expect(run.stderr).toMatch(/transport_url/);
    expect(run.stderr).not.toContain('Sekret99');
    expect(run.stderr.trim().split('\n')).toHaveLength(1);
  });

  it('a start-up step that fails names the step and exits 1: the HTTP API port is taken', async () => {
    const run = await runNovalet(['compute', '--config-file', conf('port.conf', ['transport_url = rabbit://guest:guest@127.0.0.1:1/', '[api]', `port = ${takenPort}`])]);
    expect(run.status).toBe(1);
    expect(run.stderr).toMatch(/start-up step 'HTTP API on 127\.0\.0\.1:\d+' failed/);
    // The log (stdout, JSON lines) has each step before it with its duration.
    const steps = run.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { step?: string; ms?: number }).filter((l) => l.step);
    expect(steps.map((s) => s.step)).toEqual(expect.arrayContaining(['configuration', expect.stringMatching(/^host/)]));
  }, 120_000);

  it('SIGTERM while the broker is unreachable ends it with 0; meanwhile it says it retries and /healthz is 503 with why', async () => {
    const free = createServer();
    await new Promise<void>((resolve) => free.listen(0, '127.0.0.1', resolve));
    const apiPort = (free.address() as { port: number }).port;
    await new Promise((resolve) => free.close(resolve));
    const child = startNovalet(['compute', '--config-file', conf('nobroker.conf', ['transport_url = rabbit://guest:Pw0rd@127.0.0.1:1/', '[oslo_messaging_rabbit]', 'rabbit_retry_interval = 1', '[api]', `port = ${apiPort}`])]);
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    const deadline = Date.now() + 90_000;
    while (!/is unreachable: .*Trying again in \d+ seconds/.test(out) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    expect(out).toMatch(/AMQP server on 127\.0\.0\.1:1 is unreachable/);
    const health = await fetch(`http://127.0.0.1:${apiPort}/healthz`);
    expect(health.status).toBe(503);
    const body = (await health.json()) as { status: string; reasons: string[] };
    expect(body.status).toBe('unavailable');
    expect(body.reasons).toEqual([expect.stringMatching(/not consuming compute\.cli-test: the broker is unreachable/)]);
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(out).not.toContain('Pw0rd');
  }, 120_000);
});
