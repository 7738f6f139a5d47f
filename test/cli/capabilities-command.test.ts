/**
 * `novalet capabilities` against the real libvirt (the embedded driver, QEMU
 * 7.2 under TCG: KVM is not usable on these PVM guests), checked against
 * what virsh says on an embedded root of its own (one process per root) and
 * against the host itself.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { machine, tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EMBEDDED_QEMU_CONF } from '../../hypervisor/libvirt/embedded-root.js';
import type { HostCpuReport } from '../../hypervisor/cpu/host-report.js';
import { processesMentioning } from '../libvirt/libvirt-test-support.js';
import { runNovalet, type RunResult } from '../support/run-novalet.js';

const VIRSH_ROOT = '/var/tmp/novalet-test-virsh-capabilities';
const state = mkdtempSync(path.join(tmpdir(), 'novalet-capabilities-'));

function conf(name: string, libvirt = ''): string {
  const file = path.join(state, `${name}.conf`);
  writeFileSync(file, `[DEFAULT]\nstate_path = ${state}\n[libvirt]\n${libvirt}\n`);
  return file;
}

function virsh(...args: string[]): string {
  return execFileSync('virsh', ['-c', `qemu:///embed?root=${VIRSH_ROOT}`, ...args], {
    encoding: 'utf8',
    maxBuffer: 16 * 1024 * 1024,
    env: { ...process.env, LIBVIRT_LOG_OUTPUTS: '1:file:/dev/null' },
  });
}

const attrs = (tag: string) => Object.fromEntries([...tag.matchAll(/(\w+)='([^']*)'/g)].map((m) => [m[1], m[2]]));
const featuresWith = (xml: string, policy: string) => [...xml.matchAll(new RegExp(`<feature policy='${policy}' name='([^']+)'/>`, 'g'))].map((m) => m[1] as string);

async function capabilities(config: string, json = true): Promise<RunResult & { report: HostCpuReport | null }> {
  const run = await runNovalet(['capabilities', ...(json ? ['--json'] : []), '--config-file', config]);
  return { ...run, report: json && run.stdout.trim() !== '' ? (JSON.parse(run.stdout) as HostCpuReport) : null };
}

/** What virsh says, on its own root. */
let hostCpuXml: string;
let hostTopologyXml: string;
let domcaps: string;
let hostModelXml: string;
let expandedHostModel: string;
/** The default configuration's report (host-model under the TCG fallback). */
let byDefault: RunResult & { report: HostCpuReport | null };

beforeAll(async () => {
  mkdirSync(path.join(VIRSH_ROOT, 'etc'), { recursive: true });
  writeFileSync(path.join(VIRSH_ROOT, 'etc/qemu.conf'), EMBEDDED_QEMU_CONF);
  const caps = virsh('capabilities');
  hostCpuXml = /<host>\s*<uuid>[^<]*<\/uuid>\s*(<cpu>[\s\S]*?<\/cpu>)/.exec(caps)![1] as string;
  hostTopologyXml = /<topology>\s*<cells[\s\S]*?<\/topology>/.exec(caps)?.[0] ?? '';
  domcaps = virsh('domcapabilities', '--virttype', 'qemu', '--arch', 'x86_64', '--emulatorbin', '/usr/bin/qemu-system-x86_64');
  hostModelXml = /<mode name='host-model' supported='yes'>[\s\S]*?<\/mode>/.exec(domcaps)![0];
  const file = path.join(state, 'domcaps.xml');
  writeFileSync(file, domcaps);
  // virsh reads domain capabilities as their host-model CPU, with its required and disabled features.
  expandedHostModel = virsh('hypervisor-cpu-baseline', file, '--features', '--virttype', 'qemu', '--arch', 'x86_64');
  byDefault = await capabilities(conf('default'));
}, 120_000);

afterAll(async () => {
  // Every QEMU that libvirt started to probe capabilities for this state directory is gone.
  expect(await processesMentioning(state)).toEqual([]);
  rmSync(state, { recursive: true, force: true });
});

describe('novalet capabilities --json: what this host advertises', () => {
  it("cpu_info in nova's shape, with this host's CPU as libvirt's capabilities describe it", () => {
    expect(byDefault.status).toBe(0);
    const info = byDefault.report!.cpu_info;
    expect(Object.keys(info)).toEqual(['arch', 'model', 'vendor', 'topology', 'features']);
    expect(Object.keys(info.topology)).toEqual(['cells', 'sockets', 'cores', 'threads']);
    expect(info.arch).toBe(machine());
    expect(info.arch).toBe(/<arch>([^<]+)<\/arch>/.exec(hostCpuXml)![1]);
    expect(info.model).toBe(/<model>([^<]+)<\/model>/.exec(hostCpuXml)![1]);
    expect(info.vendor).toBe(/<vendor>([^<]+)<\/vendor>/.exec(hostCpuXml)![1]);
    const topology = attrs(/<topology [^>]*\/>/.exec(hostCpuXml)![0]);
    expect(info.topology).toEqual({
      cells: readdirSync('/sys/devices/system/node').filter((n) => /^node\d+$/.test(n)).length,
      sockets: Number(topology.sockets),
      cores: Number(topology.cores),
      threads: Number(topology.threads),
    });
    expect(info.topology.cells).toBe((hostTopologyXml.match(/<cell id=/g) ?? []).length);
    const features = [...hostCpuXml.matchAll(/<feature name='([^']+)'\/>/g)].map((m) => m[1] as string);
    expect(info.features).toEqual([...features].sort());
    expect(info.features).toContain('hypervisor');
    expect(info.features).not.toContain('vmx');
  });

  it('virt type qemu only (KVM is not usable here), with the usable models and host-model libvirt reports', () => {
    const report = byDefault.report!;
    expect(report.kvm.usable).toBe(false);
    expect(report.kvm.reasons.map((r) => r.code)).toContain('KVM_MODULE_PVM');
    expect(Object.keys(report.virt_types)).toEqual(['qemu']);
    expect(report.virt_types.kvm).toBeUndefined();
    const qemu = report.virt_types.qemu!;
    expect(qemu.emulator).toBe('/usr/bin/qemu-system-x86_64');
    expect(qemu.usable_models).toEqual(expect.arrayContaining(['Westmere', 'Nehalem', 'qemu64']));
    for (const unusable of ['EPYC', 'Skylake-Server', 'Haswell']) expect(qemu.usable_models).not.toContain(unusable);
    const usableInVirsh = [...domcaps.matchAll(/<model usable='yes'[^>]*>([^<]+)<\/model>/g)].map((m) => m[1]);
    expect([...qemu.usable_models].sort()).toEqual([...usableInVirsh].sort());
    expect(qemu.host_model).toEqual({
      supported: true,
      name: 'EPYC',
      vendor: 'AMD',
      required_features: featuresWith(hostModelXml, 'require'),
      disabled_features: featuresWith(hostModelXml, 'disable'),
    });
    expect(qemu.host_model.disabled_features).toContain('sha-ni');
    expect(qemu.host_passthrough_supported).toBe(false);
  });

  it("the guest CPU by default: host-model under the TCG fallback, the features virsh expands, nova's traits, no vmx", () => {
    const guest = byDefault.report!.guest_cpu;
    expect(guest).toMatchObject({ virt_type: 'qemu', fell_back: true, can_run_instances: true, setting: 'cpu_mode = host-model (EPYC)', substitution: null, error: null, model: 'EPYC' });
    expect(guest.virt_type_reason).toMatch(/^KVM is not usable on this host \(.*\), so instances fall back to TCG software emulation/);
    expect(guest.features).toEqual(featuresWith(expandedHostModel, 'require').sort());
    // host-model's disabled features stay out, though the EPYC model has them.
    expect(guest.features).not.toContain('sha-ni');
    expect(guest.features).toContain('pni');
    expect(guest.traits).toEqual(expect.arrayContaining(['HW_CPU_X86_SSE', 'HW_CPU_X86_SSE2', 'HW_CPU_X86_SSE3', 'HW_CPU_X86_SSE42', 'HW_CPU_X86_AVX2', 'HW_CPU_X86_AESNI']));
    expect(guest.traits).not.toContain('HW_CPU_X86_SHA');
    expect(guest.traits).not.toContain('HW_CPU_X86_VMX');
    expect(guest.traits).not.toContain('HW_CPU_X86_INTEL_VMX');
    expect(guest.traits).toEqual([...guest.traits].sort());
  });

  it('cpu_mode = custom, Nehalem, -popcnt, +aes: the traits of that CPU, AES-NI and SSE4.2 but not AVX', async () => {
    const run = await capabilities(conf('nehalem', 'cpu_mode = custom\ncpu_models = Nehalem\ncpu_model_extra_flags = -popcnt, +aes'));
    expect(run.status).toBe(0);
    const guest = run.report!.guest_cpu;
    expect(guest).toMatchObject({ virt_type: 'qemu', setting: 'cpu_mode = custom, model Nehalem', substitution: null, error: null, model: 'Nehalem' });
    expect(guest.features).toContain('aes');
    expect(guest.features).toContain('sse4.2');
    expect(guest.features).not.toContain('popcnt');
    expect(guest.traits).toEqual(expect.arrayContaining(['HW_CPU_X86_AESNI', 'HW_CPU_X86_SSE42', 'HW_CPU_X86_SSE41', 'HW_CPU_X86_SSSE3', 'HW_CPU_X86_SSE2']));
    expect(guest.traits).not.toContain('HW_CPU_X86_AVX');
    expect(guest.traits).not.toContain('HW_CPU_X86_AVX2');
    expect(guest.traits).not.toContain('HW_CPU_X86_VMX');
    // The host CPU is the same whatever the guest gets.
    expect(run.report!.cpu_info).toEqual(byDefault.report!.cpu_info);
  });

  it('a flag TCG cannot give, under the fallback: dropped from the features and traits, and said', async () => {
    const run = await capabilities(conf('avx512', 'cpu_mode = custom\ncpu_models = Westmere\ncpu_model_extra_flags = +avx512f, +aes'));
    expect(run.status).toBe(0);
    const guest = run.report!.guest_cpu;
    expect(guest.substitution).toContain('+avx512f cannot be given under TCG software emulation here');
    expect(guest.features).toContain('aes');
    expect(guest.features).not.toContain('avx512f');
    expect(guest.traits).not.toContain('HW_CPU_X86_AVX512F');
    // The same on host-model: compared with the host-model CPU, the flag TCG lacks is found and dropped.
    const onHostModel = (await capabilities(conf('avx512-host-model', 'cpu_model_extra_flags = +avx512f, +aes'))).report!.guest_cpu;
    expect(onHostModel.setting).toBe('cpu_mode = host-model (EPYC)');
    expect(onHostModel.substitution).toBe('[libvirt] cpu_model_extra_flags: +avx512f cannot be given under TCG software emulation here, to which instances fall back because KVM is not usable; instances run without it.');
    expect(onHostModel.features).toContain('aes');
    expect(onHostModel.features).not.toContain('avx512f');
  });

  it('cpu_mode = none: QEMU\'s default qemu64 as libvirt expands it', async () => {
    const run = await capabilities(conf('none', 'cpu_mode = none'));
    expect(run.status).toBe(0);
    const guest = run.report!.guest_cpu;
    expect(guest).toMatchObject({ setting: 'cpu_mode = none (the hypervisor default CPU)', model: 'qemu64' });
    const expanded = virsh('hypervisor-cpu-baseline', writeCpu('qemu64'), '--features', '--virttype', 'qemu', '--arch', 'x86_64');
    expect(guest.features).toEqual(featuresWith(expanded, 'require').sort());
    expect(guest.traits).toContain('HW_CPU_X86_SSE2');
    expect(guest.traits).not.toContain('HW_CPU_X86_SSE41');
  });

  it('a guest CPU that cannot be given here: the reason, exit 1, and the rest of the report still there', async () => {
    const run = await capabilities(conf('passthrough', 'virt_type = qemu\ncpu_mode = host-passthrough'));
    expect(run.status).toBe(1);
    const report = run.report!;
    expect(report.cpu_info.arch).toBe(machine());
    expect(report.virt_types.qemu?.usable_models).toContain('Nehalem');
    expect(report.guest_cpu).toMatchObject({ virt_type: 'qemu', can_run_instances: false, setting: null, features: null, traits: [] });
    expect(report.guest_cpu.error?.code).toBe('CPU_MODE_NEEDS_KVM');
    expect(report.guest_cpu.error?.message).toMatch(/host-passthrough needs KVM.*Set \[libvirt\] cpu_mode = host-model \(here EPYC\)/);
  });

  it('without the fallback, instances cannot run: libvirt\'s words and the reason, exit 1', async () => {
    const run = await capabilities(conf('nofallback', 'virt_type = kvm\nfallback_virt_type ='));
    expect(run.status).toBe(1);
    expect(run.report!.guest_cpu).toMatchObject({ virt_type: null, can_run_instances: false, setting: null, error: null, traits: [] });
    expect(run.report!.guest_cpu.virt_type_reason).toMatch(/^could not find capabilities for domaintype=kvm: KVM is not usable on this host: /);
    expect(Object.keys(run.report!.virt_types)).toEqual(['qemu']);
  });
});

describe('novalet capabilities, for people', () => {
  it('prints the host CPU, the virt types, the guest CPU and its traits', async () => {
    const run = await capabilities(path.join(state, 'default.conf'), false);
    expect(run.status).toBe(0);
    const info = byDefault.report!.cpu_info;
    expect(run.stdout).toContain(`  arch ${info.arch}, model ${info.model}, vendor ${info.vendor}\n`);
    expect(run.stdout).toContain(`  topology: 1 NUMA cell, ${info.topology.sockets} socket`);
    expect(run.stdout).toMatch(/^KVM is not usable here \(.*KVM_MODULE_PVM.*\): virt type qemu only\.$/m);
    expect(run.stdout).toMatch(/^Virt type qemu \(TCG software emulation\), \/usr\/bin\/qemu-system-x86_64, machine pc-i440fx-/m);
    expect(run.stdout).not.toContain('Virt type kvm');
    expect(run.stdout).toContain('  host-model: EPYC (AMD)\n');
    expect(run.stdout).toContain('  cpu_mode = host-model (EPYC)\n');
    expect(run.stdout).toMatch(/nova CPU traits \(\d+\):\n {4}HW_CPU_X86_/);
    expect(run.stdout).toMatch(/\bHW_CPU_X86_SSE2\b/);
    expect(run.stdout).not.toContain('HW_CPU_X86_VMX');
    expect(run.stdout.split('\n').every((line) => line.length <= 100 || !line.includes('HW_CPU_X86_'))).toBe(true);
  });

  it('a guest CPU that cannot be given: the reason printed after the report, exit 1', async () => {
    const run = await capabilities(path.join(state, 'passthrough.conf'), false);
    expect(run.status).toBe(1);
    expect(run.stdout).toMatch(/^Host CPU \(nova's cpu_info/);
    expect(run.stdout).toContain('  The configured CPU cannot be given here: [libvirt] cpu_mode = host-passthrough needs KVM');
    expect(run.stdout).not.toContain('nova CPU traits');
  });

  it('--help describes the command; a stray argument is a one-line usage error, exit 2', async () => {
    const help = await runNovalet(['capabilities', '--help']);
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/^usage: novalet capabilities \[--json\]/);
    expect(help.stdout).toContain("nova's CPU traits");
    const stray = await runNovalet(['capabilities', 'extra', '--config-file', path.join(state, 'default.conf')]);
    expect(stray.status).toBe(2);
    expect(stray.stderr.trim().split('\n')).toHaveLength(1);
    expect(stray.stderr).toContain("novalet: capabilities: unexpected argument 'extra'");
  });
});

function writeCpu(model: string): string {
  const file = path.join(state, `${model}.xml`);
  writeFileSync(file, `<cpu mode='custom' match='exact'><model fallback='forbid'>${model}</model></cpu>`);
  return file;
}
