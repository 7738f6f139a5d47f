/**
 * `novalet capabilities` against the real libvirt, checked against what virsh
 * says on an embedded root of its own (one process per root) for the virt
 * types this host really has, and against the host itself. Cases that need
 * the TCG fallback make it for real on any host: /dev/kvm hidden in a
 * private mount namespace (a regular file bind-mounted over it).
 */
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { machine, tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HostCpuReport } from '../../hypervisor/cpu/host-report.js';
import { processesMentioning } from '../libvirt/libvirt-test-support.js';
import { hiddenKvmPrefix } from '../support/hidden-kvm.js';
import { runNovalet, type RunResult } from '../support/run-novalet.js';
import { virshOn, virtTypeHere } from '../support/this-host.js';

const virsh = virshOn('/var/tmp/novalet-test-virsh-capabilities');
const state = mkdtempSync(path.join(tmpdir(), 'novalet-capabilities-'));
const EMULATOR = `/usr/bin/qemu-system-${machine()}`;

function conf(name: string, libvirt = ''): string {
  const file = path.join(state, `${name}.conf`);
  writeFileSync(file, `[DEFAULT]\nstate_path = ${state}\n[libvirt]\n${libvirt}\n`);
  return file;
}

/** A prefix that runs the command with /dev/kvm hidden: KVM unusable, the fallback for real. */
function hiddenKvm(): string[] {
  return hiddenKvmPrefix();
}

const attrs = (tag: string) => Object.fromEntries([...tag.matchAll(/(\w+)='([^']*)'/g)].map((m) => [m[1], m[2]]));
const featuresWith = (xml: string, policy: string) => [...xml.matchAll(new RegExp(`<feature policy='${policy}' name='([^']+)'/>`, 'g'))].map((m) => m[1] as string);

async function capabilities(config: string, options: { json?: boolean; prefix?: string[] } = {}): Promise<RunResult & { report: HostCpuReport | null }> {
  const json = options.json ?? true;
  const run = await runNovalet(['capabilities', ...(json ? ['--json'] : []), '--config-file', config], options.prefix ? { prefix: options.prefix } : {});
  return { ...run, report: json && run.stdout.trim() !== '' ? (JSON.parse(run.stdout) as HostCpuReport) : null };
}

interface VirshVirtType {
  domcaps: string;
  hostModelXml: string;
  /** The host-model CPU with its features, as virsh expands the domain capabilities. */
  expandedHostModel: string;
}

/** What virsh says of the host and of each virt type. */
let hostCpuXml: string;
let hostTopologyXml: string;
const virshSays: Partial<Record<'qemu' | 'kvm', VirshVirtType>> = {};
/** The default configuration's report. */
let byDefault: RunResult & { report: HostCpuReport | null };
let effective: 'kvm' | 'qemu';

function virshVirtType(virtType: 'qemu' | 'kvm'): VirshVirtType {
  const domcaps = virsh('domcapabilities', '--virttype', virtType, '--arch', machine(), '--emulatorbin', EMULATOR);
  const file = path.join(state, `domcaps-${virtType}.xml`);
  writeFileSync(file, domcaps);
  return {
    domcaps,
    hostModelXml: /<mode name='host-model' supported='yes'>[\s\S]*?<\/mode>/.exec(domcaps)?.[0] ?? '',
    // virsh reads domain capabilities as their host-model CPU, with its required and disabled features.
    expandedHostModel: virsh('hypervisor-cpu-baseline', file, '--features', '--virttype', virtType, '--arch', machine()),
  };
}

beforeAll(async () => {
  const caps = virsh('capabilities');
  hostCpuXml = /<host>\s*<uuid>[^<]*<\/uuid>\s*(<cpu>[\s\S]*?<\/cpu>)/.exec(caps)![1] as string;
  hostTopologyXml = /<topology>\s*<cells[\s\S]*?<\/topology>/.exec(caps)?.[0] ?? '';
  byDefault = await capabilities(conf('default'));
  effective = (await virtTypeHere(conf('default'))).effective ?? 'qemu';
  virshSays.qemu = virshVirtType('qemu');
  if (byDefault.report?.kvm.usable) virshSays.kvm = virshVirtType('kvm');
}, 180_000);

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
  });

  it('the virt types available here (kvm only where KVM is usable), each with the usable models and host-model virsh reports', () => {
    const report = byDefault.report!;
    expect(Object.keys(report.virt_types).sort()).toEqual(report.kvm.usable ? ['kvm', 'qemu'] : ['qemu']);
    for (const [virtType, ours] of Object.entries(report.virt_types)) {
      const theirs = virshSays[virtType as 'qemu' | 'kvm']!;
      expect(ours.emulator).toBe(EMULATOR);
      const usableInVirsh = [...theirs.domcaps.matchAll(/<model usable='yes'[^>]*>([^<]+)<\/model>/g)].map((m) => m[1] as string);
      // Aliases rather than their -vN versions where libvirt lists both (libvirt 11).
      const offered = usableInVirsh.filter((n) => !/-v\d+$/.test(n));
      expect([...ours.usable_models].sort()).toEqual((offered.length > 0 ? offered : usableInVirsh).sort());
      expect(ours.host_model).toEqual({
        supported: theirs.hostModelXml !== '',
        name: /<model[^>]*>([^<]+)<\/model>/.exec(theirs.hostModelXml)?.[1] ?? null,
        vendor: /<vendor>([^<]+)<\/vendor>/.exec(theirs.hostModelXml)?.[1] ?? null,
        required_features: featuresWith(theirs.hostModelXml, 'require'),
        disabled_features: featuresWith(theirs.hostModelXml, 'disable'),
      });
      expect(ours.host_passthrough_supported).toBe(/<mode name='host-passthrough' supported='yes'/.test(theirs.domcaps));
      expect(ours.machine).toBe(/<machine>([^<]+)<\/machine>/.exec(theirs.domcaps)?.[1] ?? null);
    }
  });

  it("the guest CPU by default: host-model for the virt type instances get here, the features virsh expands, nova's traits", () => {
    const report = byDefault.report!;
    const guest = report.guest_cpu;
    const theirs = virshSays[effective]!;
    const hostModel = report.virt_types[effective]!.host_model;
    expect(guest).toMatchObject({ virt_type: effective, fell_back: !report.kvm.usable, can_run_instances: true, setting: `cpu_mode = host-model (${hostModel.name})`, substitution: null, error: null, model: hostModel.name });
    expect(guest.features).toEqual(featuresWith(theirs.expandedHostModel, 'require').sort());
    // host-model's disabled features stay out, though its named model has them.
    for (const feature of hostModel.disabled_features) expect(guest.features).not.toContain(feature);
    expect(guest.traits).toEqual(expect.arrayContaining(['HW_CPU_X86_SSE', 'HW_CPU_X86_SSE2']));
    // Traits follow the features: vmx/svm exactly when the guest CPU has them.
    expect(guest.traits.includes('HW_CPU_X86_VMX')).toBe(guest.features!.includes('vmx'));
    expect(guest.traits.includes('HW_CPU_X86_SSE3')).toBe(guest.features!.includes('pni') || guest.features!.includes('sse3'));
    expect(guest.traits).toEqual([...guest.traits].sort());
  });

  it('cpu_mode = custom, Nehalem, -popcnt, +aes under TCG: the traits of that CPU, AES-NI and SSE4.2 but not AVX', async () => {
    const run = await capabilities(conf('nehalem', 'virt_type = qemu\ncpu_mode = custom\ncpu_models = Nehalem\ncpu_model_extra_flags = -popcnt, +aes'));
    expect(run.status).toBe(0);
    const guest = run.report!.guest_cpu;
    expect(guest).toMatchObject({ virt_type: 'qemu', setting: 'cpu_mode = custom, model Nehalem', substitution: null, error: null, model: 'Nehalem' });
    expect(guest.features).toContain('aes');
    expect(guest.features).toContain('sse4.2');
    expect(guest.features).not.toContain('popcnt');
    expect(guest.traits).toEqual(expect.arrayContaining(['HW_CPU_X86_AESNI', 'HW_CPU_X86_SSE42', 'HW_CPU_X86_SSE41', 'HW_CPU_X86_SSSE3', 'HW_CPU_X86_SSE2']));
    for (const absent of ['HW_CPU_X86_AVX', 'HW_CPU_X86_AVX2', 'HW_CPU_X86_VMX']) expect(guest.traits).not.toContain(absent);
    // The host CPU is the same whatever the guest gets.
    expect(run.report!.cpu_info).toEqual(byDefault.report!.cpu_info);
  });

  it('a flag TCG cannot give: refused with virt_type = qemu; under the fallback (KVM hidden), dropped from features and traits, and said', async () => {
    const refused = await capabilities(conf('avx512-qemu', 'virt_type = qemu\ncpu_mode = custom\ncpu_models = Westmere\ncpu_model_extra_flags = +avx512f, +aes'));
    expect(refused.status).toBe(1);
    expect(refused.report!.guest_cpu.error?.code).toBe('CPU_FLAG_UNAVAILABLE');
    const run = await capabilities(conf('avx512', 'cpu_mode = custom\ncpu_models = Westmere\ncpu_model_extra_flags = +avx512f, +aes'), { prefix: hiddenKvm() });
    expect(run.status).toBe(0);
    const guest = run.report!.guest_cpu;
    expect(guest).toMatchObject({ virt_type: 'qemu', fell_back: true });
    expect(guest.substitution).toContain('+avx512f cannot be given under TCG software emulation here');
    expect(guest.features).toContain('aes');
    expect(guest.features).not.toContain('avx512f');
    expect(guest.traits).not.toContain('HW_CPU_X86_AVX512F');
    // The same on host-model: compared with the host-model CPU, the flag TCG lacks is found and dropped.
    const onHostModel = (await capabilities(conf('avx512-host-model', 'cpu_model_extra_flags = +avx512f, +aes'), { prefix: hiddenKvm() })).report!.guest_cpu;
    expect(onHostModel.setting).toBe(`cpu_mode = host-model (${byDefault.report!.virt_types.qemu!.host_model.name})`);
    expect(onHostModel.substitution).toBe('[libvirt] cpu_model_extra_flags: +avx512f cannot be given under TCG software emulation here, to which instances fall back because KVM is not usable; instances run without it.');
    expect(onHostModel.features).toContain('aes');
    expect(onHostModel.features).not.toContain('avx512f');
  });

  it("cpu_mode = none under TCG: QEMU's default qemu64 as libvirt expands it", async () => {
    const run = await capabilities(conf('none', 'virt_type = qemu\ncpu_mode = none'));
    expect(run.status).toBe(0);
    const guest = run.report!.guest_cpu;
    expect(guest).toMatchObject({ setting: 'cpu_mode = none (the hypervisor default CPU)', model: 'qemu64' });
    const expanded = virsh('hypervisor-cpu-baseline', writeCpu('qemu64'), '--features', '--virttype', 'qemu', '--arch', machine());
    expect(guest.features).toEqual(featuresWith(expanded, 'require').sort());
    expect(guest.traits).toContain('HW_CPU_X86_SSE2');
    expect(guest.traits).not.toContain('HW_CPU_X86_SSE41');
  });

  it('a guest CPU that cannot be given here: the reason, exit 1, and the rest of the report still there', async () => {
    const run = await capabilities(conf('passthrough', 'virt_type = qemu\ncpu_mode = host-passthrough'));
    expect(run.status).toBe(1);
    const report = run.report!;
    expect(report.cpu_info.arch).toBe(machine());
    expect(report.virt_types.qemu?.usable_models.length).toBeGreaterThan(0);
    expect(report.guest_cpu).toMatchObject({ virt_type: 'qemu', can_run_instances: false, setting: null, features: null, traits: [] });
    expect(report.guest_cpu.error?.code).toBe('CPU_MODE_NEEDS_KVM');
    expect(report.guest_cpu.error?.message).toContain(`host-passthrough needs KVM`);
    expect(report.guest_cpu.error?.message).toContain(`Set [libvirt] cpu_mode = host-model (here ${report.virt_types.qemu!.host_model.name})`);
  });

  it("without the fallback where KVM is unusable (hidden here): libvirt's words and the reason, exit 1", async () => {
    const run = await capabilities(conf('nofallback', 'virt_type = kvm\nfallback_virt_type ='), { prefix: hiddenKvm() });
    expect(run.status).toBe(1);
    expect(run.report!.guest_cpu).toMatchObject({ virt_type: null, can_run_instances: false, setting: null, error: null, traits: [] });
    expect(run.report!.guest_cpu.virt_type_reason).toMatch(/^could not find capabilities for domaintype=kvm: KVM is not usable on this host: .*\/dev\/kvm is not a character device/);
    expect(Object.keys(run.report!.virt_types)).toEqual(['qemu']);
    expect(run.report!.kvm.reasons.map((r) => r.code)).toContain('KVM_DEVICE_NOT_CHAR');
  });
});

describe('novalet capabilities, for people', () => {
  it('prints the host CPU, the virt types, the guest CPU and its traits, as the JSON report says them', async () => {
    const run = await capabilities(path.join(state, 'default.conf'), { json: false });
    expect(run.status).toBe(0);
    const report = byDefault.report!;
    const info = report.cpu_info;
    expect(run.stdout).toContain(`  arch ${info.arch}, model ${info.model}, vendor ${info.vendor}\n`);
    expect(run.stdout).toContain(`  topology: ${info.topology.cells} NUMA cell${info.topology.cells === 1 ? '' : 's'}, ${info.topology.sockets} socket`);
    if (report.kvm.usable) expect(run.stdout).toContain('KVM is usable here: virt types qemu and kvm.');
    else expect(run.stdout).toMatch(new RegExp(`^KVM is not usable here \\(${report.kvm.reasons.map((r) => r.code).join(', ')}; novalet validate says why\\): virt type qemu only\\.$`, 'm'));
    const qemu = report.virt_types.qemu!;
    expect(run.stdout).toContain(`Virt type qemu (TCG software emulation), ${EMULATOR}${qemu.machine ? `, machine ${qemu.machine}` : ''}:\n`);
    expect(run.stdout.includes('Virt type kvm')).toBe(report.kvm.usable);
    expect(run.stdout).toContain(`  host-model: ${qemu.host_model.name} (${qemu.host_model.vendor})\n`);
    expect(run.stdout).toContain(`  ${report.guest_cpu.setting}\n`);
    expect(run.stdout).toMatch(/nova CPU traits \(\d+\):\n {4}HW_CPU_X86_/);
    expect(run.stdout).toMatch(/\bHW_CPU_X86_SSE2\b/);
    expect(run.stdout.split('\n').every((line) => line.length <= 100 || !line.includes('HW_CPU_X86_'))).toBe(true);
  });

  it('a guest CPU that cannot be given: the reason printed after the report, exit 1', async () => {
    const run = await capabilities(path.join(state, 'passthrough.conf'), { json: false });
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

  it("says so before libvirt's first, seconds-long probe of QEMU in a new state folder, and only then", async () => {
    const fresh = mkdtempSync(path.join(tmpdir(), 'novalet-first-probe-'));
    try {
      const conf = path.join(fresh, 'novalet.conf');
      writeFileSync(conf, `[DEFAULT]\nstate_path = ${fresh}\n`);
      const notice = 'libvirt is probing QEMU for a new state folder';
      const first = await runNovalet(['capabilities', '--json', '--config-file', conf]);
      expect(first.stderr).toContain(notice);
      const second = await runNovalet(['capabilities', '--json', '--config-file', conf]);
      expect(second.stderr).not.toContain(notice);
      expect(second.stdout).toBe(first.stdout);
    } finally {
      rmSync(fresh, { recursive: true, force: true });
    }
  }, 90_000);
});

function writeCpu(model: string): string {
  const file = path.join(state, `${model}.xml`);
  writeFileSync(file, `<cpu mode='custom' match='exact'><model fallback='forbid'>${model}</model></cpu>`);
  return file;
}
