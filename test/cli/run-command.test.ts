/**
 * `novalet run` for real: embedded libvirt, QEMU, the test guest. With the
 * default configuration the run must say what this host gives (its probe and
 * the self-test the run itself records); the other cases ask for TCG, which
 * every host has. Every case checks that no QEMU process and no instance
 * files are left.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../config/load-config.js';
import { probeHost } from '../../hypervisor/host/probe.js';
import { selfTestNotNeeded } from '../../hypervisor/virt-type/decision.js';
import { buildTestGuest, TEST_GUEST_DIR } from '../guest/test-guest.js';
import { onlyStdioThen } from '../libvirt/libvirt-test-support.js';
import { hiddenKvmPrefix } from '../support/hidden-kvm.js';
import { runNovalet, TOP } from '../support/run-novalet.js';
import { guest, kernelArgs, leftovers, qemuFor, stateWith } from '../support/run-command-state.js';
import { virtTypeHere, virtTypeWords } from '../support/this-host.js';

beforeAll(() => {
  buildTestGuest();
});

/** glance's [import_filtering_opts] letting the tests' loopback image servers in. */
const LOOPBACK_IMAGES = ['[import_filtering_opts]', 'allowed_hosts = 127.0.0.1', 'allowed_ports ='].join('\n');

describe('novalet run', () => {
  it('says which virt type and why (as this host gives it), streams the console, exits 0 on --wait-for and leaves nothing', async () => {
    const { conf, state } = stateWith();
    const run = await runNovalet(['run', '--config-file', conf, '--name', 'hello', ...kernelArgs('hello'), '--wait-for', 'NOVALET-TEST-GUEST-READY', '--timeout', '90']);
    expect(run.status).toBe(0);
    expect(run.stdout).toMatch(/^NOVALET-TEST-GUEST-READY name=hello cpu_model=/m);
    // The self-test ran where a booted guest is needed to tell; what it found is this boot's record now.
    const probe = await probeHost();
    const selfTestApplies = selfTestNotNeeded(loadConfig({ configFiles: [conf] }).values.libvirt, probe) === null;
    expect(existsSync(path.join(state, 'kvm-self-test.json'))).toBe(selfTestApplies);
    if (selfTestApplies) {
      // Not a terminal here: the phase is a log line (cli/progress.ts).
      expect(run.stderr).toContain('"msg":"checking that KVM really runs guests: booting a test guest under KVM (up to 8 s)"');
      expect(run.stderr).toMatch(/novalet run: KVM self-test (passed|failed): /);
    }
    const here = await virtTypeHere(conf);
    expect(here.effective).not.toBeNull();
    expect(run.stderr).toContain(`hello (`);
    expect(run.stderr).toContain(`) runs under ${virtTypeWords(here.effective!)}: ${here.reason}\n`);
    // The guest CPU it used is the one `novalet capabilities` says instances get here.
    const capabilities = JSON.parse((await runNovalet(['capabilities', '--json', '--config-file', conf])).stdout) as { guest_cpu: { setting: string } };
    expect(run.stderr).toContain(`novalet run: guest CPU: ${capabilities.guest_cpu.setting}.`);
    expect(run.stderr).toContain('a console line matched --wait-for; the instance is removed.');
    expect(qemuFor(state)).toEqual([]);
    expect(leftovers(state)).toEqual([]);
  });

  it('boots when started from a shell with other descriptors open (3 and 5, a gap at 4), as sudo, systemd or CI may leave them', async () => {
    const { conf, state } = stateWith('[libvirt]\nvirt_type = qemu');
    const run = await runNovalet(['run', '--config-file', conf, ...kernelArgs('fds'), '--wait-for', 'NOVALET-TEST-GUEST-READY', '--timeout', '90'], {
      prefix: onlyStdioThen('3</dev/null 5</dev/null'),
    });
    expect(run.stderr).not.toContain('unexpected exit status');
    expect(run.status).toBe(0);
    expect(run.stdout).toMatch(/^NOVALET-TEST-GUEST-READY name=fds /m);
    expect(qemuFor(state)).toEqual([]);
    expect(leftovers(state)).toEqual([]);
  });

  it('boots a qcow2 image through the image cache', async () => {
    const { conf, state } = stateWith('[libvirt]\nvirt_type = qemu');
    const run = await runNovalet(['run', '--config-file', conf, '--image', guest.disk, '--wait-for', 'NOVALET-TEST-GUEST-READY', '--timeout', '90']);
    expect(run.status).toBe(0);
    expect(run.stdout).toContain('NOVALET-TEST-GUEST-DISK NOVALET-TG');
    expect(readdirSync(path.join(state, 'instances/_base')).length).toBe(2);
    expect(leftovers(state)).toEqual([]);
  });

  it('exits 124 on --timeout while the guest runs, and leaves nothing', async () => {
    const { conf, state } = stateWith('[libvirt]\nvirt_type = qemu');
    // Long enough for a fresh root's probe and a boot under TCG on a loaded machine; the guest never ends by itself.
    const run = await runNovalet(['run', '--config-file', conf, ...kernelArgs('slow'), '--timeout', '60']);
    expect(run.status).toBe(124);
    expect(run.stdout).toContain('NOVALET-TEST-GUEST-READY name=slow');
    expect(run.stderr).toContain('--timeout 60 s reached; the instance is removed.');
    expect(qemuFor(state)).toEqual([]);
    expect(leftovers(state)).toEqual([]);
  }, 180_000);

  it('--timeout bounds an image download that never ends (a loopback server sending a byte every 100 ms)', async () => {
    const { conf, state } = stateWith(['[libvirt]', 'virt_type = qemu', LOOPBACK_IMAGES].join('\n'));
    let requests = 0;
    const server = createServer((_request, response) => {
      requests += 1;
      response.writeHead(200, { 'content-type': 'application/octet-stream' });
      const timer = setInterval(() => response.write('x'), 100);
      response.on('close', () => clearInterval(timer));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/endless.qcow2`;
      const started = Date.now();
      const run = await runNovalet(['run', '--config-file', conf, '--image', url, '--checksum', `sha256:${'0'.repeat(64)}`, '--timeout', '15']);
      const took = Date.now() - started;
      expect(run.status, run.stderr).toBe(124);
      expect(requests, 'the download had begun when the limit came').toBe(1);
      expect(run.stderr).toContain('--timeout 15 s reached; nothing it had started is left.');
      // The limit is the behaviour: reached, and not overrun by more than the clean-up (a wide margin on a loaded machine).
      expect(took).toBeGreaterThanOrEqual(15_000);
      expect(took).toBeLessThan(60_000);
      const base = path.join(state, 'instances/_base');
      expect(existsSync(base) ? readdirSync(base) : [], 'no partial image').toEqual([]);
      expect(qemuFor(state)).toEqual([]);
      expect(leftovers(state)).toEqual([]);
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  }, 120_000);

  it('--timeout bounds libvirt\'s first probe of QEMU in a new state folder: 124 at once, no probing QEMU left', async () => {
    const { conf, state } = stateWith('[libvirt]\nvirt_type = qemu');
    const run = await runNovalet(['run', '--config-file', conf, ...kernelArgs('probe'), '--timeout', '1']);
    expect(run.status, run.stderr).toBe(124);
    expect(run.stderr).toContain('--timeout 1 s reached; nothing it had started is left.');
    expect(run.stdout).not.toContain('NOVALET-TEST-GUEST-READY');
    // No QEMU of this state folder, guest or probe, outlives the command.
    expect(qemuFor(state)).toEqual([]);
    expect(leftovers(state)).toEqual([]);
  }, 120_000);

  it('runs two at once, each on an embedded root of its own', async () => {
    const { conf, state } = stateWith('[libvirt]\nvirt_type = qemu');
    const [a, b] = await Promise.all(
      ['one', 'two'].map((name) => runNovalet(['run', '--config-file', conf, ...kernelArgs(name), '--wait-for', 'NOVALET-TEST-GUEST-READY', '--timeout', '90'])),
    );
    expect(a?.status).toBe(0);
    expect(b?.status).toBe(0);
    expect(a?.stdout).toContain('name=one');
    expect(b?.stdout).toContain('name=two');
    expect(readdirSync(path.join(state, 'run/libvirt')).filter((n) => n.startsWith('slot-') && !n.endsWith('.claim')).length).toBeGreaterThanOrEqual(2);
    expect(leftovers(state)).toEqual([]);
  });

  it('refuses bad arguments with exit 2 before starting anything', async () => {
    const { conf } = stateWith();
    expect((await runNovalet(['run', '--config-file', conf, ...kernelArgs('x'), '--memory', '0'])).status).toBe(2);
    const noKernel = await runNovalet(['run', '--config-file', conf, '--kernel', '/nonexistent/vmlinuz']);
    expect(noKernel.status).toBe(1);
    expect(noKernel.stderr).toContain('The kernel /nonexistent/vmlinuz cannot be read (ENOENT)');
    const badRegex = await runNovalet(['run', '--config-file', conf, ...kernelArgs('x'), '--wait-for', '(']);
    expect(badRegex.status).toBe(2);
    expect(badRegex.stderr).toContain("--wait-for '(' is not a regular expression");
  });
});

describe('/dev/kvm hidden in a private mount namespace', () => {
  const hiddenKvm = hiddenKvmPrefix;

  it('with fallback_virt_type empty, the build fails with the classic fault and nothing is left', async () => {
    const { conf, state } = stateWith('[libvirt]\nfallback_virt_type =');
    const run = await runNovalet(['run', '--config-file', conf, ...kernelArgs('nokvm')], { prefix: hiddenKvm() });
    expect(run.status).toBe(1);
    expect(run.stderr).toMatch(/could not be launched: could not find capabilities for domaintype=kvm: KVM is not usable on this host: .*\/dev\/kvm is not a character device/);
    expect(run.stderr).toContain('[libvirt] virt_type = qemu');
    expect(qemuFor(state)).toEqual([]);
    expect(leftovers(state)).toEqual([]);
  });

  it('with the fallback, the same build boots under TCG', async () => {
    const { conf } = stateWith();
    const run = await runNovalet(['run', '--config-file', conf, ...kernelArgs('fallback'), '--wait-for', 'NOVALET-TEST-GUEST-READY', '--timeout', '90'], { prefix: hiddenKvm() });
    expect(run.status).toBe(0);
    expect(run.stderr).toMatch(/runs under TCG software emulation \(qemu\): KVM is not usable on this host/);
    expect(run.stdout).toContain('name=fallback');
  });

  it("libvirt's own refusal of KVM (libvirt 9's words) becomes the same fault, with no domain left", () => {
    const script = path.join(TOP, 'dist/test/support/launch-forcing-kvm.js');
    const pool = mkdtempSync(path.join(tmpdir(), 'novalet-forced-pool-'));
    const [unshare, ...rest] = hiddenKvm();
    const out = execFileSync(unshare as string, [...rest, process.execPath, script, TEST_GUEST_DIR, pool], { encoding: 'utf8' });
    const outcomes = JSON.parse(out.trim().split('\n').at(-1) ?? '[]') as { code: string; message: string; leftDomain: boolean }[];
    expect(outcomes).toHaveLength(3);
    for (const outcome of outcomes) {
      expect(outcome.code).toBe('KVM_UNAVAILABLE');
      expect(outcome.message).toMatch(/^could not find capabilities for domaintype=kvm: KVM is not usable on this host\. libvirt said: /);
      expect(outcome.leftDomain).toBe(false);
    }
    expect(outcomes[0]?.message).toContain('could not get preferred machine for /usr/bin/qemu-system-x86_64 type=kvm');
    expect(outcomes[1]?.message).toContain("Emulator '/usr/bin/qemu-system-x86_64' does not support virt type 'kvm'");
    expect(outcomes[2]?.message).toContain("the accel 'kvm' is not supported by '/usr/bin/qemu-system-x86_64' on this host");
  });
});
