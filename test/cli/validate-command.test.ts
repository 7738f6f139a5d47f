import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runNovalet, TOP } from '../support/run-novalet.js';

/**
 * `novalet validate` on this very machine, which is the field report's trap:
 * a guest with /dev/kvm from kvm_pvm and no vmx/svm. Real probe, real
 * /dev/kvm ioctls, real libvirt library.
 */

const SAMPLE = path.join(TOP, 'etc/novalet.conf.sample');

function configFile(text: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'novalet-validate-'));
  const file = path.join(dir, 'nova.conf');
  writeFileSync(file, text);
  return file;
}

interface Report {
  checks: { name: string; result: string; detail: string; hint: string | null }[];
  kvm: { usable: boolean; reasons: { code: string; message: string; remedy: string }[] };
  virt_type: string;
  effective_virt_type: string | null;
  summary: string;
}

describe('novalet validate on this machine', () => {
  it('says KVM is unusable for ordinary guests (kvm_pvm, no vmx/svm) and that instances run under TCG', async () => {
    const run = await runNovalet(['validate', '--config-file', SAMPLE]);
    expect(run.status).toBe(0);
    const lines = run.stdout.trim().split('\n');
    expect(lines).toContainEqual(expect.stringMatching(/^FAIL\s+Hardware virtualization\s+: no vmx or svm/));
    expect(lines).toContainEqual(expect.stringMatching(/^FAIL\s+KVM module\s+: kvm_pvm/));
    expect(lines).toContainEqual(expect.stringMatching(/^PASS\s+\/dev\/kvm exists/));
    expect(lines).toContainEqual(expect.stringMatching(/^PASS\s+KVM API\s+: API version 12, KVM_CREATE_VM works/));
    expect(lines).toContainEqual(expect.stringMatching(/^PASS\s+QEMU system emulators\s+: .*x86_64/));
    expect(lines).toContainEqual(expect.stringMatching(/^PASS\s+qemu-img/));
    expect(lines).toContainEqual(expect.stringMatching(/^PASS\s+libvirt library\s+: libvirt\.so\.0 \d+\.\d+\.\d+/));
    expect(lines).toContainEqual(expect.stringMatching(/^WARN\s+Configured virt_type\s+: virt_type = kvm, but KVM is unusable here/));
    expect(lines.at(-1)).toMatch(/^Instances will run here under TCG software emulation \(virt type qemu\): KVM is not usable on this host/);
  });

  it('gives the same as data with --json', async () => {
    const run = await runNovalet(['validate', '--json', '--config-file', SAMPLE]);
    expect(run.status).toBe(0);
    const report = JSON.parse(run.stdout) as Report;
    expect(report.virt_type).toBe('kvm');
    expect(report.effective_virt_type).toBe('qemu');
    expect(report.kvm.usable).toBe(false);
    expect(report.kvm.reasons.map((r) => r.code)).toEqual(expect.arrayContaining(['KVM_MODULE_PVM', 'NO_HW_VIRT_IN_VM']));
    for (const reason of report.kvm.reasons) {
      expect(reason.remedy).toContain('[libvirt] virt_type = qemu');
    }
    for (const check of report.checks) {
      expect(['PASS', 'WARN', 'FAIL']).toContain(check.result);
      expect(check.detail.length).toBeGreaterThan(0);
    }
  });

  it('exits 1 with the classic fault when the fallback is disabled', async () => {
    const file = configFile('[libvirt]\nvirt_type = kvm\nfallback_virt_type =\n');
    const run = await runNovalet(['validate', '--json', '--config-file', file]);
    expect(run.status).toBe(1);
    const report = JSON.parse(run.stdout) as Report;
    expect(report.effective_virt_type).toBeNull();
    expect(report.summary).toMatch(/^Instances cannot run on this host: could not find capabilities for domaintype=kvm: KVM is not usable on this host: /);
    expect(report.summary).toContain('kvm_pvm');
    expect(report.summary).toContain('[libvirt] virt_type = qemu');
  });

  it('runs TCG without complaint when virt_type = qemu', async () => {
    const file = configFile('[libvirt]\nvirt_type = qemu\n');
    const run = await runNovalet(['validate', '--config-file', file]);
    expect(run.status).toBe(0);
    expect(run.stdout).toMatch(/PASS\s+Configured virt_type\s+: virt_type = qemu/);
  });

  it('refuses host-passthrough when virt_type = qemu runs instances under TCG', async () => {
    const file = configFile('[libvirt]\nvirt_type = qemu\ncpu_mode = host-passthrough\n');
    const run = await runNovalet(['validate', '--config-file', file]);
    expect(run.status).toBe(1);
    expect(run.stdout).toMatch(/FAIL\s+CPU options\s+: cpu_mode = host-passthrough: host-passthrough needs KVM/);
    expect(run.stdout.trim().split('\n').at(-1)).toMatch(/^Instances cannot run on this host: CPU options/);
  });

  it('stops on a bad value with exit 2 and one line naming file, line, section, option, value and what is allowed', async () => {
    const file = configFile('[DEFAULT]\ndebug = false\n\n[libvirt]\nvirt_type = kvmm\n');
    const run = await runNovalet(['validate', '--config-file', file]);
    expect(run.status).toBe(2);
    expect(run.stdout).toBe('');
    const lines = run.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(`${file}:5`);
    expect(lines[0]).toContain('[libvirt] virt_type');
    expect(lines[0]).toContain("'kvmm'");
    expect(lines[0]).toContain('kvm, lxc, qemu, parallels');
    expect(run.stderr).not.toMatch(/\n\s+at /);
  });

  it('names the hidden /dev/kvm when a regular file is bind-mounted over it in a private mount namespace', async () => {
    // As ENVIRONMENT.md describes: an empty regular file bind-mounted over /dev/kvm.
    const dir = mkdtempSync(path.join(tmpdir(), 'novalet-nokvm-'));
    const empty = path.join(dir, 'empty');
    writeFileSync(empty, '');
    const script = `mount --bind ${empty} /dev/kvm && exec "$@"`;
    const run = await runNovalet(['validate', '--json', '--config-file', SAMPLE], { prefix: ['unshare', '-m', 'sh', '-c', script, 'sh'] });
    expect(run.stderr).toBe('');
    const report = JSON.parse(run.stdout) as Report;
    expect(report.kvm.reasons.map((r) => r.code)).toContain('KVM_DEVICE_NOT_CHAR');
    const exists = report.checks.find((c) => c.name === '/dev/kvm exists');
    expect(exists?.result).toBe('FAIL');
    expect(exists?.detail).toBe('/dev/kvm is there but is not a character device');
    expect(exists?.hint).toContain('findmnt');
    expect(report.effective_virt_type).toBe('qemu');
  });
});

describe('novalet command line', () => {
  it('refuses an unknown command with exit 2 and one line', async () => {
    const run = await runNovalet(['frobnicate']);
    expect(run.status).toBe(2);
    expect(run.stderr.trim()).toMatch(/^novalet: unknown command 'frobnicate'; the commands are: validate, config, capabilities, cpu-compare, cpu-baseline, run\./);
  });

  it('refuses an unknown option with exit 2 and one line', async () => {
    const run = await runNovalet(['validate', '--frob']);
    expect(run.status).toBe(2);
    expect(run.stderr.trim().split('\n')).toHaveLength(1);
    expect(run.stderr).toContain("--frob");
  });
});

describe('novalet validate with a self-test on record', () => {
  it('shows the self-test of this boot from state_path, without booting anything', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'novalet-validate-selftest-'));
    const { readBootId, qemuVersion } = await import('../../hypervisor/virt-type/self-test.js');
    const record = {
      passed: false,
      detail: 'the test guest printed no marker on its serial console within 20 s although libvirt reported it running',
      durationMs: 20000,
      bootId: await readBootId(),
      qemuVersion: await qemuVersion('/usr/bin/qemu-system-x86_64'),
      at: '2026-11-24T23:00:00.000Z',
    };
    writeFileSync(path.join(dir, 'kvm-self-test.json'), JSON.stringify(record));
    const file = configFile(`[DEFAULT]\nstate_path = ${dir}\n`);
    const run = await runNovalet(['validate', '--json', '--config-file', file]);
    const report = JSON.parse(run.stdout) as Report;
    expect(report.checks.find((c) => c.name === 'KVM self-test')).toMatchObject({ result: 'FAIL', detail: `${record.detail} (in this boot, ${record.at})` });
    expect(report.kvm.reasons.map((r) => r.code)).toContain('KVM_SELFTEST_FAILED');
    // A record of another boot is not this boot's evidence.
    writeFileSync(path.join(dir, 'kvm-self-test.json'), JSON.stringify({ ...record, bootId: 'another-boot' }));
    const stale = JSON.parse((await runNovalet(['validate', '--json', '--config-file', file])).stdout) as Report;
    expect(stale.checks.find((c) => c.name === 'KVM self-test')).toMatchObject({ result: 'WARN', detail: 'not run yet in this boot' });
  });
});
