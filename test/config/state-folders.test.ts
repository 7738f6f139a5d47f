import { spawnSync } from 'node:child_process';
import { chmodSync, cpSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../config/config-error.js';
import { parseConfigText } from '../../config/load-config.js';
import { checkStateFolders, folderProblem } from '../../config/state-folders.js';
import { TOP } from '../support/run-novalet.js';

const work = mkdtempSync(path.join(tmpdir(), 'novalet-state-folders-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const aFile = path.join(work, 'a-file');
writeFileSync(aFile, 'x');

function stateError(text: string): ConfigError {
  const loaded = parseConfigText(text, '/etc/novalet/novalet.conf');
  try {
    checkStateFolders(loaded);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).code).toBe('CONFIG_STATE_PATH');
    return err as ConfigError;
  }
  throw new Error('no error');
}

describe('the folders novalet writes in are checked before use', () => {
  it('a folder that exists, or can be created, passes', () => {
    expect(folderProblem(work)).toBeNull();
    expect(folderProblem(path.join(work, 'not/yet/there'))).toBeNull();
    expect(() => checkStateFolders(parseConfigText(`[DEFAULT]\nstate_path = ${work}/state\n`, 'n.conf'))).not.toThrow();
  });

  it('a regular file where a folder should be, or on the way to it, names the option and the path', () => {
    expect(stateError(`[DEFAULT]\nstate_path = ${aFile}\n`).message).toBe(
      `/etc/novalet/novalet.conf:2: [DEFAULT] state_path = '${aFile}' is a regular file, where a folder should be. Set [DEFAULT] state_path to a folder novalet can create and write in, such as /var/lib/novalet.`,
    );
    expect(stateError(`[DEFAULT]\nstate_path = ${aFile}/deeper/still\n`).message).toContain(
      `state_path = '${aFile}/deeper/still' cannot be created: ${aFile} is a regular file, not a folder.`,
    );
    // instances_path's default, from a state_path that is fine: the default is named, expanded.
    mkdirSync(path.join(work, 'state'));
    writeFileSync(path.join(work, 'state/instances'), '');
    expect(stateError(`[DEFAULT]\nstate_path = ${work}/state\n`).message).toMatch(
      /^default: \[DEFAULT\] instances_path = '.*\/state\/instances' is a regular file, where a folder should be\./,
    );
    // Written with a reference: shown as written, then as expanded.
    expect(stateError(`[DEFAULT]\nstate_path = ${work}\ninstances_path = $state_path/a-file\n`).message).toContain(
      `:3: [DEFAULT] instances_path = '$state_path/a-file' ('${aFile}') is a regular file`,
    );
  });

  it('a path under /proc or /sys, directly or through a link, is refused before anything tries to create it', () => {
    expect(stateError('[DEFAULT]\nstate_path = /proc/nope\n').message).toBe(
      "/etc/novalet/novalet.conf:2: [DEFAULT] state_path = '/proc/nope' is under /proc, a kernel file system where novalet cannot keep state. Set [DEFAULT] state_path to a folder novalet can create and write in, such as /var/lib/novalet.",
    );
    expect(stateError(`[DEFAULT]\nstate_path = ${work}\ninstances_path = /sys/x\n`).message).toContain("instances_path = '/sys/x' is under /sys,");
    symlinkSync('/proc/self', path.join(work, 'to-proc'));
    expect(stateError(`[DEFAULT]\nstate_path = ${work}/to-proc/x\n`).message).toContain('is under /proc (through a link)');
  });

  it('a relative path is refused', () => {
    expect(stateError('[DEFAULT]\nstate_path = var/lib/novalet\n').message).toContain("state_path = 'var/lib/novalet' is not an absolute path;");
  });

  it('a path that took text from a secret is not shown', () => {
    const e = stateError('[DEFAULT]\ntransport_url = rabbit://u:Hunter2pw@h/\nstate_path = /proc/$transport_url\n');
    expect(e.message).toContain("state_path = '***' is under /proc");
    expect(e.message).not.toContain('Hunter2pw');
  });

  it('a folder the user cannot write in, or create in, is refused (checked as nobody)', () => {
    const shared = path.join(work, 'shared');
    mkdirSync(path.join(shared, 'root-only'), { recursive: true });
    chmodSync(work, 0o755);
    chmodSync(shared, 0o755);
    // nobody may not be able to read the checkout (a clone under a 0700 folder): a copy of config/ it can read.
    // config/ imports nothing outside itself (docs/architecture.md).
    const readable = path.join(work, 'config-copy');
    cpSync(path.join(TOP, 'dist/config'), readable, { recursive: true });
    chmodSync(readable, 0o755);
    const script = `import { folderProblem } from ${JSON.stringify(path.join(readable, 'state-folders.js'))};
      process.stdout.write(JSON.stringify([folderProblem(${JSON.stringify(path.join(shared, 'root-only'))}), folderProblem(${JSON.stringify(path.join(shared, 'root-only/new'))})]));`;
    const run = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, '--input-type=module', '-e', script], { encoding: 'utf8' });
    expect(run.stderr).toBe('');
    expect(JSON.parse(run.stdout)).toEqual([
      'is not writable for the user novalet runs as.',
      `cannot be created: ${path.join(shared, 'root-only')} is not writable for the user novalet runs as.`,
    ]);
  });

  it('loadCliConfig checks them before libvirt\'s log is routed there (state_path = /proc/nope spun at 100% CPU)', () => {
    const conf = path.join(work, 'proc.conf');
    writeFileSync(conf, '[DEFAULT]\nstate_path = /proc/nope\n');
    const script = `import { loadCliConfig } from ${JSON.stringify(path.join(TOP, 'dist/cli/load-cli-config.js'))};
      try { loadCliConfig({ 'config-file': [${JSON.stringify(conf)}] }); } catch (err) { process.stdout.write(err.code + ': ' + err.message); }`;
    const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 10_000, env: { ...process.env, LIBVIRT_LOG_OUTPUTS: undefined } });
    expect(run.signal).toBeNull();
    expect(run.stdout).toBe(
      `CONFIG_STATE_PATH: ${conf}:2: [DEFAULT] state_path = '/proc/nope' is under /proc, a kernel file system where novalet cannot keep state. Set [DEFAULT] state_path to a folder novalet can create and write in, such as /var/lib/novalet.`,
    );
  });
});
