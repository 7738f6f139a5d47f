/**
 * `[libvirt] connection_uri = qemu:///system` where a libvirtd runs. The test
 * starts a libvirtd of its own in a private mount namespace — its own
 * /etc/libvirt (qemu.conf as the embedded driver's), /run/libvirt and state
 * directories — so the host's libvirt configuration is never touched, and
 * runs the client in a namespace where that libvirtd's socket is at
 * /run/libvirt/libvirt-sock, the place qemu:///system looks.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EMBEDDED_QEMU_CONF } from '../../hypervisor/libvirt/embedded-root.js';
import { buildTestGuest, TEST_GUEST_DIR } from '../guest/test-guest.js';
import { REPO } from './libvirt-test-support.js';

const work = mkdtempSync(path.join(tmpdir(), 'novalet-libvirtd-'));
const dirs = { etc: '/etc/libvirt', run: '/run/libvirt', lib: '/var/lib/libvirt', cache: '/var/cache/libvirt', log: '/var/log/libvirt' };
let libvirtd: ChildProcess;

/** `mount --bind` our directories over libvirt's, then run the command. */
function inNamespace(command: string): string {
  const mounts = Object.entries(dirs).map(([name, target]) => `mkdir -p ${target} && mount --bind ${path.join(work, name)} ${target}`);
  return [...mounts, command].join(' && ');
}

beforeAll(async () => {
  buildTestGuest();
  for (const name of Object.keys(dirs)) mkdirSync(path.join(work, name), { recursive: true });
  writeFileSync(path.join(work, 'etc/qemu.conf'), EMBEDDED_QEMU_CONF);
  writeFileSync(path.join(work, 'etc/libvirtd.conf'), 'auth_unix_rw = "none"\nunix_sock_rw_perms = "0700"\n');
  libvirtd = spawn('unshare', ['-m', 'sh', '-c', inNamespace(`exec /usr/sbin/libvirtd --config /etc/libvirt/libvirtd.conf --pid-file ${work}/libvirtd.pid`)], { stdio: 'ignore' });
  const socket = path.join(work, 'run/libvirt-sock');
  const deadline = Date.now() + 60_000;
  while (!existsSync(socket)) {
    if (Date.now() > deadline || libvirtd.exitCode !== null) throw new Error('libvirtd did not start');
    await new Promise((r) => setTimeout(r, 100));
  }
}, 90_000);

afterAll(async () => {
  libvirtd.kill('SIGTERM');
  await new Promise((resolve) => (libvirtd.exitCode !== null ? resolve(null) : libvirtd.once('exit', resolve)));
});

describe('connection_uri = qemu:///system', () => {
  it('boots the test guest through the libvirtd, and leaves no domain', () => {
    const state = path.join(work, 'state');
    const conf = path.join(work, 'novalet.conf');
    writeFileSync(conf, `[DEFAULT]\nstate_path = ${state}\n[libvirt]\nconnection_uri = qemu:///system\n`);
    const script = path.join(REPO, 'dist/test/support/launch-on-configured-connection.js');
    const out = execFileSync('unshare', ['-m', 'sh', '-c', inNamespace(`exec "$@"`), 'sh', process.execPath, script, conf, TEST_GUEST_DIR], {
      encoding: 'utf8',
      timeout: 180_000,
    });
    const outcome = JSON.parse(out.trim().split('\n').at(-1) ?? '{}') as Record<string, unknown>;
    expect(outcome.error).toBeUndefined();
    expect(outcome).toMatchObject({ uri: 'qemu:///system', embedded: false, virtType: 'qemu', leftDomain: false });
    expect(outcome.marker).toMatch(/^NOVALET-TEST-GUEST-READY name=via-libvirtd /);
    // Nothing of the guest outlives it: libvirtd's QEMU was destroyed.
    expect(() => execFileSync('pgrep', ['-f', `qemu-system.*${state}`])).toThrow();
  });
});
