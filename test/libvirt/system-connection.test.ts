/**
 * `[libvirt] connection_uri = qemu:///system` where a libvirtd runs. The test
 * starts a libvirtd of its own in a private mount namespace — its own
 * /etc/libvirt (qemu.conf as the embedded driver's), /run/libvirt and state
 * directories — so the host's libvirt configuration is never touched, and
 * runs the client in a namespace where that libvirtd's socket is at
 * /run/libvirt/libvirt-sock, the place qemu:///system looks.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EMBEDDED_QEMU_CONF } from '../../hypervisor/libvirt/embedded-root.js';
import { testGuestFiles } from '../../hypervisor/virt-type/test-guest.js';
import { buildTestGuest, TEST_GUEST_DIR } from '../guest/test-guest.js';
import { REPO } from './libvirt-test-support.js';

const work = mkdtempSync(path.join(tmpdir(), 'novalet-libvirtd-'));
const dirs = { etc: '/etc/libvirt', run: '/run/libvirt', lib: '/var/lib/libvirt', cache: '/var/cache/libvirt', log: '/var/log/libvirt' };
let libvirtd: ChildProcess;
const guest = testGuestFiles(TEST_GUEST_DIR);

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

/** `novalet ARGS` in the namespace where qemu:///system is our libvirtd; its status and output. */
function novaletThere(args: string[]): { status: number; stdout: string; stderr: string } {
  const result = spawnSync('unshare', ['-m', 'sh', '-c', inNamespace(`exec "$@"`), 'sh', process.execPath, path.join(REPO, 'dist/cli/main.js'), ...args], {
    encoding: 'utf8',
    timeout: 180_000,
  });
  return { status: result.status ?? -1, stdout: result.stdout, stderr: result.stderr };
}

describe('connection_uri = qemu:///system, honoured by every command', () => {
  const state = path.join(work, 'state');
  const conf = path.join(work, 'novalet.conf');

  beforeAll(() => {
    writeFileSync(conf, `[DEFAULT]\nstate_path = ${state}\n[libvirt]\nconnection_uri = qemu:///system\nvirt_type = qemu\nkvm_selftest_guest_dir = ${TEST_GUEST_DIR}\n`);
  });

  it('novalet run boots the test guest through the libvirtd, and leaves no domain and no QEMU', () => {
    const run = novaletThere(['run', '--config-file', conf, '--name', 'via-libvirtd', '--kernel', guest.kernel, '--ramdisk', guest.initramfs, '--cmdline', 'console=ttyS0 novalet.name=via-libvirtd', '--wait-for', 'NOVALET-TEST-GUEST-READY', '--timeout', '120']);
    expect(run.stderr).toContain('runs under TCG software emulation (qemu)');
    expect(run.status).toBe(0);
    expect(run.stdout).toMatch(/^NOVALET-TEST-GUEST-READY name=via-libvirtd /m);
    // The embedded pool under state_path was never used: the guest ran in libvirtd.
    expect(existsSync(path.join(state, 'run/libvirt'))).toBe(false);
    expect(existsSync(path.join(work, 'lib/qemu'))).toBe(true);
    // Nothing of the guest outlives it: libvirtd's QEMU was destroyed, its domain undefined.
    expect(() => execFileSync('pgrep', ['-f', `qemu-system.*${state}`])).toThrow();
    expect(novaletThere(['validate', '--config-file', conf]).status).toBe(0);
  });

  it('novalet capabilities and cpu-compare ask the libvirtd', () => {
    const caps = novaletThere(['capabilities', '--json', '--config-file', conf]);
    expect(caps.status).toBe(0);
    expect((JSON.parse(caps.stdout) as { virt_types: Record<string, unknown> }).virt_types.qemu).toBeDefined();
    const cpu = path.join(work, 'qemu64.xml');
    writeFileSync(cpu, '<cpu><arch>x86_64</arch><model>qemu64</model></cpu>');
    const compare = novaletThere(['cpu-compare', '--config-file', conf, cpu]);
    expect(compare.status).toBe(0);
    expect(existsSync(path.join(state, 'run/libvirt'))).toBe(false);
  });
});
