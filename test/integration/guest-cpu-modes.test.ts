/**
 * Every cpu_mode launched for real under TCG: the guest's own /proc/cpuinfo
 * (printed in the test guest's marker) shows the requested model's flags and
 * not the disabled ones; settings TCG cannot honour are refused before any
 * guest exists, or — when TCG is only the fallback from an unusable KVM —
 * replaced with the reason said.
 *
 * Expectations come from this host's own TCG domain capabilities (its
 * host-model, which models are usable), not from one machine's answers. The
 * fallback cases run the driver with KVM judged unusable: this host's own
 * verdict where KVM is unusable here, else the verdict of a host whose KVM
 * self-test failed (the field report's VM), which is what the fallback is for.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NovaletConfig } from '../../config/novalet-config.js';
import type { ComputeHost } from '../../hypervisor/compute-host.js';
import { GuestCpuError, usableModels } from '../../hypervisor/cpu/guest-choice.js';
import { waitForConsoleLine } from '../../hypervisor/instance/console-follow.js';
import { LibvirtDriver, type LaunchedInstance } from '../../hypervisor/instance/libvirt-driver.js';
import { validateInstanceSpec } from '../../hypervisor/instance/spec.js';
import { parseDomainCapabilities, type DomainCapabilities } from '../../hypervisor/libvirt/domain-capabilities.js';
import { decideVirtType, judgeKvm } from '../../hypervisor/virt-type/decision.js';
import { READY_MARKER, testGuestCmdline, testGuestFiles } from '../../hypervisor/virt-type/test-guest.js';
import type { KvmVerdict } from '../../messaging/contracts/kvm-verdict.js';
import { TEST_GUEST_DIR } from '../guest/test-guest.js';
import { testComputeHost, testConfig } from './launch-support.js';

const guest = testGuestFiles(TEST_GUEST_DIR);
const BOOT_MS = 90_000;

let host: ComputeHost;
/** KVM unusable: the verdict the fallback cases run with. */
let unusable: KvmVerdict;
let tcg: DomainCapabilities;
const { config: base, stateDir } = testConfig();
const spawned: Array<{ driver: LibvirtDriver; uuid: string }> = [];

beforeAll(async () => {
  host = await testComputeHost(base, 'recorded');
  unusable = host.verdict.usable
    ? judgeKvm({ probe: host.probe, selfTest: { passed: false, detail: 'the test guest printed no marker on its serial console within 8 s', durationMs: 8000 } })
    : host.verdict;
  tcg = parseDomainCapabilities(await host.connection.getDomainCapabilities({ emulatorbin: host.tools.qemuEmulators[host.probe.arch], arch: host.probe.arch, virttype: 'qemu' }));
}, 180_000);

afterAll(async () => {
  for (const { driver, uuid } of spawned) await driver.destroy(uuid).catch(() => undefined);
  await host?.close();
});

/** A driver whose [libvirt] CPU options are `libvirt`, with KVM judged unusable (the TCG fallback) unless virt_type = qemu. */
function driverWith(libvirt: Partial<NovaletConfig['libvirt']>): LibvirtDriver {
  const config: NovaletConfig = { ...base, libvirt: { ...base.libvirt, ...libvirt } };
  return new LibvirtDriver({
    connection: host.connection,
    config,
    // As the assembly decides it, on the verdict this test imposes.
    host: { arch: host.probe.arch, verdict: unusable, virtType: decideVirtType({ libvirt: config.libvirt, verdict: unusable, hostArch: host.probe.arch }), qemuEmulators: host.tools.qemuEmulators },
    instancesPath: path.join(stateDir, 'instances'),
  });
}

/** Features Linux lists in /proc/cpuinfo exactly when their CPUID bit is set. */
const CPUID_FLAGS = new Set(['vme', 'sha-ni', 'avx512f', 'pcid', 'invpcid', 'rdseed', 'hle', 'rtm', 'xsavec', 'x2apic', 'avx2', 'bmi2']);

/** libvirt's feature names as Linux prints them in /proc/cpuinfo. */
function linuxFlag(feature: string): string {
  const renamed: Record<string, string> = { pclmuldq: 'pclmulqdq', 'sse4.1': 'sse4_1', 'sse4.2': 'sse4_2' };
  return renamed[feature] ?? feature.replace(/[.-]/g, '_');
}

function hostModelSetting(): string {
  return `cpu_mode = host-model (${tcg.cpu.hostModel.model})`;
}

interface Booted {
  launched: LaunchedInstance;
  flags: Set<string>;
}

async function boot(driver: LibvirtDriver, name: string): Promise<Booted> {
  const spec = validateInstanceSpec({ name, vcpus: 1, memoryMiB: 256, kernel: guest.kernel, ramdisk: guest.initramfs, cmdline: testGuestCmdline(name) });
  const launched = await driver.spawn(spec);
  spawned.push({ driver, uuid: launched.uuid });
  const line = await waitForConsoleLine(launched.consoleLog, READY_MARKER, BOOT_MS);
  expect(line, `no marker on the console of ${name}`).not.toBeNull();
  const flags = new Set((READY_MARKER.exec(line as string)?.[3] ?? '').trim().split(/\s+/));
  expect(flags.size).toBeGreaterThan(10);
  return { launched, flags };
}

async function refusal(driver: LibvirtDriver, name: string): Promise<GuestCpuError> {
  const spec = validateInstanceSpec({ name, vcpus: 1, memoryMiB: 256, kernel: guest.kernel, ramdisk: guest.initramfs });
  const err = await driver.spawn(spec).then(
    () => {
      spawned.push({ driver, uuid: spec.uuid });
      return null;
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(GuestCpuError);
  // Nothing half-made: no instance folder, no domain.
  expect(existsSync(driver.instanceDir(spec.uuid))).toBe(false);
  expect(await host.connection.lookupByUuid(spec.uuid)).toBeNull();
  return err as GuestCpuError;
}

/** A named model TCG cannot give here (newest first in libvirt's list: a server CPU). */
function unusableUnderTcg(): string {
  const model = [...tcg.cpu.custom.models].reverse().find((m) => m.usable === 'no' && !/-v\d+$/.test(m.name));
  expect(model, 'TCG offers every CPU model here').toBeDefined();
  return model!.name;
}

describe('each cpu_mode under the TCG fallback', () => {
  // The guests boot in parallel: each takes ~4 s of TCG, most of it the kernel.
  let results: Record<string, Booted>;
  let firstUnusable: string;
  beforeAll(async () => {
    expect(unusable.usable).toBe(false);
    expect(tcg.cpu.hostModel.supported).toBe(true);
    expect(usableModels(tcg)).toEqual(expect.arrayContaining(['Nehalem', 'Westmere']));
    firstUnusable = unusableUnderTcg();
    const cases: Record<string, Partial<NovaletConfig['libvirt']>> = {
      'host-model': { cpu_mode: null },
      custom: { cpu_mode: 'custom', cpu_models: ['Nehalem'], cpu_model_extra_flags: ['+aes', '-popcnt'] },
      'custom-fallback': { cpu_mode: 'custom', cpu_models: [firstUnusable, 'Westmere'], cpu_model_extra_flags: ['-aes', '+avx512f'] },
      'host-passthrough': { cpu_mode: 'host-passthrough' },
      none: { cpu_mode: 'none' },
    };
    const booted = await Promise.all(Object.entries(cases).map(async ([name, libvirt]) => [name, await boot(driverWith(libvirt), `cpu-${name}`)] as const));
    results = Object.fromEntries(booted);
  }, 240_000);

  it('host-model (nova’s default): what TCG gives as host-model here, without the features libvirt disables in it', () => {
    const { launched, flags } = results['host-model']!;
    expect(launched.virtType).toBe('qemu');
    expect(launched.guestCpu).toEqual({ setting: hostModelSetting(), substitution: null });
    for (const flag of ['sse2', 'ssse3', 'sse4_2']) expect(flags).toContain(flag);
    // Of the features libvirt disables, those Linux shows straight from their CPUID bit are absent in the guest
    // (others, such as 3dnowprefetch on AMD, Linux sets by itself).
    const disabled = tcg.cpu.hostModel.features.filter((f) => f.policy === 'disable').map((f) => f.name).filter((name) => CPUID_FLAGS.has(name));
    for (const feature of disabled) expect(flags).not.toContain(linuxFlag(feature));
  });

  it('custom Nehalem with +aes and -popcnt: Nehalem’s flags, aes added, popcnt gone, nothing newer', () => {
    const { launched, flags } = results.custom!;
    expect(launched.guestCpu).toEqual({ setting: 'cpu_mode = custom, model Nehalem', substitution: null });
    for (const flag of ['sse4_1', 'sse4_2', 'ssse3', 'aes']) expect(flags).toContain(flag);
    for (const flag of ['popcnt', 'avx', 'avx2', 'pclmulqdq']) expect(flags).not.toContain(flag);
  });

  it('cpu_models whose first is not usable under TCG: the next one, the unavailable flag dropped, both said', () => {
    const { launched, flags } = results['custom-fallback']!;
    expect(launched.guestCpu.setting).toBe('cpu_mode = custom, model Westmere');
    expect(launched.guestCpu.substitution).toContain(`${firstUnusable}`);
    expect(launched.guestCpu.substitution).toContain('is not usable under TCG software emulation here, to which instances fall back because KVM is not usable; instances get Westmere');
    expect(launched.guestCpu.substitution).toContain('+avx512f cannot be given under TCG software emulation here');
    // Westmere has pclmulqdq and sse4_2; aes was disabled; avx512f was dropped.
    for (const flag of ['sse4_2', 'pclmulqdq']) expect(flags).toContain(flag);
    for (const flag of ['aes', 'avx512f', 'avx']) expect(flags).not.toContain(flag);
  });

  it('host-passthrough under the fallback: host-model instead, and why', () => {
    const { launched, flags } = results['host-passthrough']!;
    expect(launched.guestCpu.setting).toBe(hostModelSetting());
    expect(launched.guestCpu.substitution).toMatch(/^\[libvirt\] cpu_mode = host-passthrough needs KVM/);
    expect([...flags].sort()).toEqual([...results['host-model']!.flags].sort());
  });

  it('none: QEMU’s default CPU (qemu64), without the SSE4 of the others', () => {
    const { launched, flags } = results.none!;
    expect(launched.guestCpu).toEqual({ setting: 'cpu_mode = none (the hypervisor default CPU)', substitution: null });
    for (const flag of ['sse2', 'lm']) expect(flags).toContain(flag);
    for (const flag of ['ssse3', 'sse4_1', 'sse4_2', 'aes']) expect(flags).not.toContain(flag);
  });
});

describe('settings TCG cannot honour with virt_type = qemu, refused before any guest exists', () => {
  it('host-passthrough', async () => {
    const err = await refusal(driverWith({ virt_type: 'qemu', cpu_mode: 'host-passthrough' }), 'passthrough-tcg');
    expect(err.code).toBe('CPU_MODE_NEEDS_KVM');
    expect(err.message).toContain(`Set [libvirt] cpu_mode = host-model (here ${tcg.cpu.hostModel.model})`);
  });

  it('a model TCG cannot give names the usable ones', async () => {
    const err = await refusal(driverWith({ virt_type: 'qemu', cpu_mode: 'custom', cpu_models: [unusableUnderTcg()] }), 'unusable-tcg');
    expect(err.code).toBe('CPU_MODEL_UNUSABLE');
    expect(err.message).toMatch(/The usable models are: .*Westmere/);
  });

  it('a flag TCG cannot give', async () => {
    const err = await refusal(driverWith({ virt_type: 'qemu', cpu_mode: 'custom', cpu_models: ['Westmere'], cpu_model_extra_flags: ['+avx512f'] }), 'avx512-tcg');
    expect(err.code).toBe('CPU_FLAG_UNAVAILABLE');
    expect(err.message).toBe('[libvirt] cpu_model_extra_flags asks for +avx512f, which Westmere guests cannot have under TCG software emulation here. Remove it from cpu_model_extra_flags: TCG does not emulate it.');
  });

  it('a model libvirt does not know', async () => {
    const err = await refusal(driverWith({ virt_type: 'qemu', cpu_mode: 'custom', cpu_models: ['Westmare'] }), 'typo');
    expect(err.code).toBe('CPU_MODEL_UNKNOWN');
    expect(err.message).toContain('Did you mean Westmere');
  });
});
