import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../config/load-config.js';
import { probeHost } from '../../hypervisor/host/probe.js';
import { isX86 } from '../../hypervisor/host/cpuinfo.js';
import type { HostProbe } from '../../hypervisor/host/facts.js';
import type { KvmVerdict } from '../../messaging/contracts/kvm-verdict.js';
import { decideVirtType, selfTestNotNeeded } from '../../hypervisor/virt-type/decision.js';
import { buildTestGuest, TEST_GUEST_DIR } from '../guest/test-guest.js';
import { hiddenKvmPrefix } from '../support/hidden-kvm.js';
import { runNovalet, TOP } from '../support/run-novalet.js';
import { virshOn, virtTypeHere } from '../support/this-host.js';

/**
 * `novalet validate` on this very machine: real probe, real /dev/kvm ioctls,
 * real libvirt (its domain capabilities judge the CPU options). What it must
 * say follows from what the probe and this boot's self-test find here, so
 * the tests hold on a bare-metal KVM host as on the PVM build machines.
 */

const SAMPLE = path.join(TOP, 'etc/novalet.conf.sample');

function configFile(text: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'novalet-validate-'));
  const file = path.join(dir, 'nova.conf');
  // A state folder of its own, named last so that the lines of `text` keep their numbers.
  writeFileSync(file, text.includes('state_path') ? text : `${text}\n[DEFAULT]\nstate_path = ${dir}\n`);
  return file;
}

interface Report {
  checks: { name: string; result: string; detail: string; hint: string | null }[];
  kvm: KvmVerdict;
  self_test: { passed: boolean; detail: string; at: string } | null;
  kvm_unproven: boolean;
  virt_type: string;
  effective_virt_type: string | null;
  summary: string;
  can_run_instances: boolean;
}

const check = (report: Report, name: string) => report.checks.find((c) => c.name === name);

let probe: HostProbe;
/** TCG's models on this host, as virsh reads libvirt's domain capabilities. */
let tcgUsable: string[];
let tcgUnusable: string[];

beforeAll(() => {
  buildTestGuest();
});

beforeAll(async () => {
  probe = await probeHost();
  const domcaps = virshOn('/var/tmp/novalet-test-virsh-validate')('domcapabilities', '--virttype', 'qemu', '--arch', probe.arch);
  const models = [...domcaps.matchAll(/<model usable='(yes|no)'[^>]*>([^<]+)<\/model>/g)].map((m) => ({ usable: m[1] === 'yes', name: m[2] as string }));
  tcgUsable = models.filter((m) => m.usable).map((m) => m.name);
  tcgUnusable = models.filter((m) => !m.usable && !/-v\d+$/.test(m.name)).map((m) => m.name);
}, 120_000);

describe('novalet validate on this machine', () => {
  it('says what the probe finds, line by line, and what instances run with here and why', async () => {
    const here = await virtTypeHere(SAMPLE);
    const run = await runNovalet(['validate', '--json', '--config-file', SAMPLE]);
    expect(run.status).toBe(here.effective === null ? 1 : 0);
    const report = JSON.parse(run.stdout) as Report;
    expect(report.effective_virt_type).toBe(here.effective);
    if (isX86(probe.arch)) {
      const hardware = probe.cpu.flags.includes('vmx') || probe.cpu.flags.includes('svm');
      expect(check(report, 'Hardware virtualization')?.result).toBe(hardware ? 'PASS' : 'FAIL');
    }
    const module = probe.kvmModule.name;
    expect(check(report, 'KVM module')?.result).toBe(module === 'kvm_intel' || module === 'kvm_amd' ? 'PASS' : 'FAIL');
    expect(check(report, '/dev/kvm exists')?.result).toBe(probe.kvmDevice.exists && probe.kvmDevice.isCharDevice ? 'PASS' : 'FAIL');
    for (const name of ['QEMU system emulators', 'qemu-img', 'libvirt library']) expect(check(report, name)?.result).toBe('PASS');
    expect(check(report, 'libvirt library')?.detail).toMatch(/^libvirt\.so\.0 \d+\.\d+\.\d+$/);
    // The CPU options were asked of libvirt: the guest CPU this host gives for the virt type.
    expect(check(report, 'CPU options')?.detail).toMatch(/^cpu_mode = host-model \(default\): instances get cpu_mode = host-model/);
    for (const reason of report.kvm.reasons) expect(reason.remedy).toContain('[libvirt] virt_type = qemu');
    if (here.effective === 'qemu') {
      expect(report.summary).toBe(`Instances will run here under TCG software emulation (virt type qemu): ${here.reason}`);
    } else if (report.kvm_unproven) {
      expect(report.summary).toMatch(/^KVM is unproven here: .*Run `novalet validate --self-test`/);
    } else {
      expect(report.summary).toBe('Instances will run here under KVM hardware virtualization.');
    }
    const text = await runNovalet(['validate', '--config-file', SAMPLE]);
    expect(text.stdout.trim().split('\n').at(-1)).toBe(report.summary);
    expect(text.stdout).toMatch(/^(PASS|WARN|FAIL)\s+KVM API\s+: /m);
  });

  it('with the fallback disabled: the classic fault where KVM is unusable, KVM where it is usable', async () => {
    const file = configFile('[libvirt]\nvirt_type = kvm\nfallback_virt_type =\n');
    const here = await virtTypeHere(file);
    const run = await runNovalet(['validate', '--json', '--config-file', file]);
    const report = JSON.parse(run.stdout) as Report;
    expect(report.effective_virt_type).toBe(here.effective);
    if (here.effective === null) {
      expect(run.status).toBe(1);
      expect(report.summary).toMatch(/^Instances cannot run on this host: could not find capabilities for domaintype=kvm: KVM is not usable on this host: /);
      for (const reason of report.kvm.reasons) expect(report.summary).toContain(reason.message.replace(/\.$/, ''));
      expect(report.summary).toContain('[libvirt] virt_type = qemu');
    } else {
      expect(run.status).toBe(0);
      expect(here.effective).toBe('kvm');
    }
  });

  it('runs TCG without complaint when virt_type = qemu', async () => {
    const file = configFile('[libvirt]\nvirt_type = qemu\n');
    const run = await runNovalet(['validate', '--config-file', file]);
    expect(run.status).toBe(0);
    expect(run.stdout).toMatch(/PASS\s+Configured virt_type\s+: virt_type = qemu/);
    expect(run.stdout).toMatch(/PASS\s+KVM self-test\s+: not needed: virt_type = qemu/);
  });

  it('refuses host-passthrough when virt_type = qemu runs instances under TCG, in libvirt-checked words', async () => {
    const file = configFile('[libvirt]\nvirt_type = qemu\ncpu_mode = host-passthrough\n');
    const run = await runNovalet(['validate', '--config-file', file]);
    expect(run.status).toBe(1);
    expect(run.stdout).toMatch(/FAIL\s+CPU options\s+: cpu_mode = host-passthrough: \[libvirt\] cpu_mode = host-passthrough needs KVM/);
    expect(run.stdout.trim().split('\n').at(-1)).toMatch(/^Instances cannot run on this host: CPU options/);
  });

  it('never passes a CPU model that TCG cannot give here; passes one it can, naming what instances get', async () => {
    expect(tcgUnusable.length).toBeGreaterThan(0);
    const model = tcgUnusable.at(-1) as string;
    const bad = await runNovalet(['validate', '--config-file', configFile(`[libvirt]\nvirt_type = qemu\ncpu_mode = custom\ncpu_models = ${model}\n`)]);
    expect(bad.status).toBe(1);
    expect(bad.stdout).toMatch(new RegExp(`FAIL\\s+CPU options\\s+: cpu_mode = custom, cpu_models = ${model}: \\[libvirt\\] cpu_models = ${model}: none is usable under TCG software emulation here`));
    expect(bad.stdout).not.toMatch(/PASS\s+CPU options/);
    const good = tcgUsable.includes('Westmere') ? 'Westmere' : (tcgUsable[0] as string);
    const ok = await runNovalet(['validate', '--config-file', configFile(`[libvirt]\nvirt_type = qemu\ncpu_mode = custom\ncpu_models = ${good}\n`)]);
    expect(ok.status).toBe(0);
    expect(ok.stdout).toMatch(new RegExp(`PASS\\s+CPU options\\s+: cpu_mode = custom, cpu_models = ${good}: instances get cpu_mode = custom, model ${good} under virt type qemu`));
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
    // An empty regular file at /dev/kvm: what a container passing a wrong file would show.
    const run = await runNovalet(['validate', '--json', '--config-file', SAMPLE], { prefix: hiddenKvmPrefix() });
    expect(run.stderr).toBe('');
    const report = JSON.parse(run.stdout) as Report;
    expect(report.kvm.reasons.map((r) => r.code)).toContain('KVM_DEVICE_NOT_CHAR');
    const exists = check(report, '/dev/kvm exists');
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
    expect(run.stderr.trim()).toMatch(/^novalet: unknown command 'frobnicate'; the commands are: validate, config, capabilities, cpu-compare, cpu-baseline, compute, run\./);
  });

  it('refuses an unknown option with exit 2 and one line', async () => {
    const run = await runNovalet(['validate', '--frob']);
    expect(run.status).toBe(2);
    expect(run.stderr.trim().split('\n')).toHaveLength(1);
    expect(run.stderr).toContain('--frob');
  });
});

describe('novalet validate and the KVM self-test', () => {
  it('shows the self-test of this boot from state_path, without booting anything; a record of another boot is not evidence', async () => {
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
    const applies = selfTestNotNeeded(loadConfig({ configFiles: [file] }).values.libvirt, probe) === null;
    const report = JSON.parse((await runNovalet(['validate', '--json', '--config-file', file])).stdout) as Report;
    if (!applies) {
      // No KVM to test here: a record cannot stand for one.
      expect(check(report, 'KVM self-test')?.result).toBe('WARN');
      expect(report.kvm.reasons.map((r) => r.code)).not.toContain('KVM_SELFTEST_FAILED');
      return;
    }
    expect(check(report, 'KVM self-test')).toMatchObject({ result: 'FAIL', detail: `${record.detail} (in this boot, ${record.at})` });
    expect(report.kvm.reasons.map((r) => r.code)).toContain('KVM_SELFTEST_FAILED');
    expect(report.effective_virt_type).toBe('qemu');
    writeFileSync(path.join(dir, 'kvm-self-test.json'), JSON.stringify({ ...record, bootId: 'another-boot' }));
    const stale = JSON.parse((await runNovalet(['validate', '--json', '--config-file', file])).stdout) as Report;
    expect(check(stale, 'KVM self-test')).toMatchObject({ result: 'WARN', detail: 'KVM is unproven: no guest has been booted under KVM in this boot' });
  });

  it('--self-test boots the test guest under KVM where that is the question, records it, and exits with its result', async () => {
    // Short: libvirt's monitor socket under state_path must fit a UNIX socket path (108 bytes).
    const dir = mkdtempSync(path.join(tmpdir(), 'novalet-vst-'));
    const file = configFile(`[DEFAULT]\nstate_path = ${dir}\n[libvirt]\nkvm_selftest_guest_dir = ${TEST_GUEST_DIR}\nkvm_selftest_timeout = 8\n`);
    const config = loadConfig({ configFiles: [file] }).values;
    const run = await runNovalet(['validate', '--self-test', '--json', '--config-file', file]);
    const report = JSON.parse(run.stdout) as Report;
    if (selfTestNotNeeded(config.libvirt, probe) !== null) {
      expect(report.self_test).toBeNull();
      expect(existsSync(path.join(dir, 'kvm-self-test.json'))).toBe(false);
      expect(run.status).toBe(report.can_run_instances ? 0 : 1);
      return;
    }
    expect(report.self_test, JSON.stringify(check(report, 'KVM self-test'))).not.toBeNull();
    expect(report.kvm_unproven).toBe(false);
    expect(existsSync(path.join(dir, 'kvm-self-test.json'))).toBe(true);
    expect(run.status).toBe(report.self_test?.passed ? 0 : 1);
    expect(report.kvm.reasons.map((r) => r.code).includes('KVM_SELFTEST_FAILED')).toBe(!report.self_test?.passed);
    // The verdict follows the evidence, and a plain validate afterwards shows the recorded result.
    const here = decideVirtType({ libvirt: config.libvirt, verdict: report.kvm, hostArch: probe.arch });
    expect(report.effective_virt_type).toBe(here.effective);
    const later = JSON.parse((await runNovalet(['validate', '--json', '--config-file', file])).stdout) as Report;
    expect(later.self_test).toEqual(report.self_test);
  });
});

describe('CPU names libvirt does not know: bad configuration in every command, exit 2 with a "did you mean"', () => {
  // Names outside libvirt's cpu_map are unknown on every host; no host's CPU decides these answers.
  it.each([
    ['[libvirt]\ncpu_mode = custom\ncpu_models = Skylake-Clientt', /nova\.conf:3: \[libvirt\] cpu_models = Skylake-Clientt: 'Skylake-Clientt' is not a CPU model libvirt knows for \w+ \(its cpu_map\)\. Did you mean Skylake-Client\b/],
    ['[libvirt]\ncpu_model_extra_flags = sse4_2', /nova\.conf:2: \[libvirt\] cpu_model_extra_flags: 'sse4_2' is not a CPU feature libvirt knows for \w+ \(its cpu_map\)\. Did you mean 'sse4\.2'\?/],
  ])('%s', async (text, words) => {
    const file = configFile(text);
    try {
      for (const command of [['validate'], ['capabilities'], ['validate', '--json'], ['run', '--kernel', '/nonexistent-kernel']]) {
        const run = await runNovalet([...command, '--config-file', file]);
        expect(run.status, `${command.join(' ')}: ${run.stderr}`).toBe(2);
        const lines = run.stderr.trim().split('\n').filter((l) => l.startsWith('novalet'));
        expect(lines, command.join(' ')).toHaveLength(1);
        expect(lines[0]).toMatch(words);
      }
    } finally {
      rmSync(path.dirname(file), { recursive: true, force: true });
    }
  });

  it('a known model, even one this host cannot give, is no configuration error: validate says FAIL or PASS, exit 0 or 1', async () => {
    const file = configFile('[libvirt]\ncpu_mode = custom\ncpu_models = Nehalem');
    try {
      const run = await runNovalet(['validate', '--config-file', file]);
      expect([0, 1]).toContain(run.status);
      expect(run.stdout).toMatch(/CPU options\s+: cpu_mode = custom, cpu_models = Nehalem/);
    } finally {
      rmSync(path.dirname(file), { recursive: true, force: true });
    }
  });
});

describe('run: a kernel or ramdisk that is a directory', () => {
  it('one line naming the option, exit 2, before any host is assembled', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'novalet-validate-'));
    try {
      const run = await runNovalet(['run', '--kernel', dir]);
      expect(run.status, run.stderr).toBe(2);
      expect(run.stderr.trim()).toBe(`novalet: The kernel ${dir} is a directory. Give the path of a kernel image file (novalet run --kernel FILE).`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
