import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runNovalet, TOP } from '../support/run-novalet.js';

const work = mkdtempSync(path.join(tmpdir(), 'novalet-config-cmd-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
let counter = 0;

function configFile(text: string): string {
  const file = path.join(work, `nova-${++counter}.conf`);
  writeFileSync(file, text);
  return file;
}

const NOVA_CONF = [
  '[DEFAULT]',
  'transport_url = rabbit://nova:s3cret-pw@rmq1:5672/',
  'my_ip = 10.0.0.5',
  '',
  '[libvirt]',
  'virt_type = qemu',
  'cpu_model = Nehalem',
  'cpu_mode = custom',
  '',
  '[keystone_authtoken]',
  'password = another-secret',
  '',
].join('\n');

describe('novalet config', () => {
  it('sample prints exactly etc/novalet.conf.sample', async () => {
    const run = await runNovalet(['config', 'sample']);
    expect(run.status).toBe(0);
    expect(run.stdout).toBe(readFileSync(path.join(TOP, 'etc/novalet.conf.sample'), 'utf8'));
  });

  it('show --json gives every option with its typed value and source, the password masked', async () => {
    const file = configFile(NOVA_CONF);
    const run = await runNovalet(['config', 'show', '--json', '--config-file', file]);
    expect(run.status).toBe(0);
    const report = JSON.parse(run.stdout) as Record<string, Record<string, { value: unknown; source: string }>>;
    expect(report.libvirt?.virt_type).toEqual({ value: 'qemu', source: `${file}:6` });
    expect(report.libvirt?.cpu_models).toEqual({ value: ['Nehalem'], source: `${file}:7` });
    expect(report.libvirt?.fallback_virt_type).toEqual({ value: 'qemu', source: 'default' });
    expect(report.scheduler?.max_attempts).toEqual({ value: 3, source: 'default' });
    expect(report.DEFAULT?.debug).toEqual({ value: false, source: 'default' });
    expect(report.DEFAULT?.transport_url).toEqual({ value: 'rabbit://nova:***@rmq1:5672/', source: `${file}:2` });
    expect(run.stdout).not.toContain('s3cret-pw');
    expect(run.stdout).not.toContain('another-secret');
  });

  it('show --show-secrets reveals the transport_url password', async () => {
    const file = configFile(NOVA_CONF);
    const run = await runNovalet(['config', 'show', '--json', '--show-secrets', '--config-file', file]);
    const report = JSON.parse(run.stdout) as Record<string, Record<string, { value: unknown }>>;
    expect(report.DEFAULT?.transport_url?.value).toBe('rabbit://nova:s3cret-pw@rmq1:5672/');
  });

  it('show as text: one line per option with its source; --debug names the ignored options and warns of deprecated names', async () => {
    const file = configFile(NOVA_CONF);
    const run = await runNovalet(['config', 'show', '--debug', '--config-file', file]);
    expect(run.status).toBe(0);
    expect(run.stdout).toContain('[libvirt]');
    expect(run.stdout).toContain(`cpu_models = Nehalem    # ${file}:7`);
    expect(run.stdout).toContain('virt_type = qemu');
    const logs = run.stderr.trim().split('\n').map((l) => JSON.parse(l) as { level: number; msg: string; section?: string; option?: string });
    expect(logs).toContainEqual(expect.objectContaining({ level: 20, section: 'keystone_authtoken', option: 'password', msg: 'ignoring an option novalet does not implement' }));
    expect(logs).toContainEqual(expect.objectContaining({ level: 40, msg: 'option [libvirt] cpu_model is deprecated; use [libvirt] cpu_models' }));
    expect(run.stderr).not.toContain('another-secret');
    expect(run.stderr).not.toContain('s3cret-pw');
  });

  it('refuses an unknown subcommand with exit 2', async () => {
    const run = await runNovalet(['config', 'frob']);
    expect(run.status).toBe(2);
    expect(run.stderr.trim()).toBe("novalet: config: unknown subcommand 'frob'; use show or sample. Run `novalet --help` for the commands and their options.");
  });
});

describe('logger', () => {
  it('never prints the credentials of a transport_url, nor a password field', () => {
    const script = `import('${path.join(TOP, 'dist/config/logger.js')}').then(({ createLogger }) => {
      const log = createLogger();
      log.info({ transport_url: 'rabbit://nova:s3cret-pw@rmq1:5672/' }, 'connecting');
      log.info({ broker: { url: 'amqp://u:pw2@h/' , password: 'pw3' } }, 'nested');
    })`;
    const run = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' });
    expect(run.status).toBe(0);
    const lines = run.stderr.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines[0]?.transport_url).toBe('rabbit://nova:***@rmq1:5672/');
    expect(lines[1]?.broker).toEqual({ url: 'amqp://u:***@h/', password: '***' });
    expect(run.stderr).not.toMatch(/s3cret-pw|pw2|pw3/);
  });

  it('the commands\' deferred logger loads pino only for a line it writes, and then masks as the plain one', () => {
    const script = `import('${path.join(TOP, 'dist/config/logger.js')}').then(({ createDeferredLogger }) => {
      const pinoLoaded = () => Object.keys(require.cache).some((file) => file.includes('/node_modules/pino/'));
      const log = createDeferredLogger();
      log.debug({ transport_url: 'rabbit://nova:hidden-pw@rmq1/' }, 'not at info');
      const before = { loaded: pinoLoaded(), level: log.level, debug: log.isLevelEnabled('debug'), info: log.isLevelEnabled('info') };
      log.info({ transport_url: 'rabbit://nova:s3cret-pw@rmq1:5672/' }, 'connecting');
      process.stdout.write(JSON.stringify({ before, after: pinoLoaded() }));
    })`;
    const run = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', env: { ...process.env, NOVALET_LOG_LEVEL: 'info' } });
    expect(run.status).toBe(0);
    expect(JSON.parse(run.stdout)).toEqual({ before: { loaded: false, level: 'info', debug: false, info: true }, after: true });
    const lines = run.stderr.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ msg: 'connecting', transport_url: 'rabbit://nova:***@rmq1:5672/' });
    expect(run.stderr).not.toMatch(/s3cret-pw|hidden-pw/);
  });
});
