/**
 * Every cpu_mode launched for real on this machine, where KVM is unusable
 * (kvm_pvm) and instances fall back to TCG: the guest's own /proc/cpuinfo
 * (printed in the test guest's marker) shows the requested model's flags and
 * not the disabled ones; settings TCG cannot honour are refused before any
 * guest exists, or replaced with the reason said.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NovaletConfig } from '../../config/novalet-config.js';
import { waitForConsoleLine } from '../../hypervisor/instance/console-follow.js';
import { GuestCpuError } from '../../hypervisor/cpu/guest-choice.js';
import { InstanceLauncher, type LaunchedInstance } from '../../hypervisor/instance/libvirt-driver.js';
import { validateInstanceSpec } from '../../hypervisor/instance/spec.js';
import { prepareHost, type PreparedHost } from '../../hypervisor/compute-host.js';
import type { LibvirtConnection } from '../../hypervisor/libvirt/connection.js';
import { READY_MARKER, testGuestCmdline, testGuestFiles } from '../../hypervisor/virt-type/test-guest.js';
import { TEST_GUEST_DIR } from '../guest/test-guest.js';
import { openTestRoot } from '../libvirt/libvirt-test-support.js';
import { testConfig } from './launch-support.js';

const guest = testGuestFiles(TEST_GUEST_DIR);
const BOOT_MS = 90_000;

let connection: LibvirtConnection;
let host: PreparedHost;
const { config: base, stateDir } = testConfig();
const launchers: InstanceLauncher[] = [];
const spawned: Array<{ launcher: InstanceLauncher; uuid: string }> = [];

beforeAll(async () => {
  connection = (await openTestRoot()).connection;
  host = await prepareHost({ config: base, connection, workDir: stateDir });
}, 180_000);

afterAll(async () => {
  for (const { launcher, uuid } of spawned) await launcher.delete(uuid).catch(() => undefined);
  await connection?.close();
});

/** A launcher whose [libvirt] CPU options are `libvirt`, on the host prepared once. */
function launcherWith(libvirt: Partial<NovaletConfig['libvirt']>): InstanceLauncher {
  const config: NovaletConfig = { ...base, libvirt: { ...base.libvirt, ...libvirt } };
  const launcher = new InstanceLauncher({ connection, config, host, instancesPath: path.join(stateDir, 'instances') });
  launchers.push(launcher);
  return launcher;
}

interface Booted {
  launched: LaunchedInstance;
  flags: Set<string>;
}

async function boot(launcher: InstanceLauncher, name: string): Promise<Booted> {
  const spec = validateInstanceSpec({ name, vcpus: 1, memoryMiB: 256, kernel: guest.kernel, ramdisk: guest.initramfs, cmdline: testGuestCmdline(name) });
  const launched = await launcher.spawn(spec);
  spawned.push({ launcher, uuid: launched.uuid });
  const line = await waitForConsoleLine(launched.consoleLog, READY_MARKER, BOOT_MS);
  expect(line, `no marker on the console of ${name}`).not.toBeNull();
  const flags = new Set((READY_MARKER.exec(line as string)?.[3] ?? '').trim().split(/\s+/));
  expect(flags.size).toBeGreaterThan(10);
  return { launched, flags };
}

async function refusal(launcher: InstanceLauncher, name: string): Promise<GuestCpuError> {
  const spec = validateInstanceSpec({ name, vcpus: 1, memoryMiB: 256, kernel: guest.kernel, ramdisk: guest.initramfs });
  const err = await launcher.spawn(spec).then(
    () => {
      spawned.push({ launcher, uuid: spec.uuid });
      return null;
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(GuestCpuError);
  // Nothing half-made: no instance folder, no domain.
  expect(existsSync(launcher.instanceDir(spec.uuid))).toBe(false);
  expect(await connection.lookupByUuid(spec.uuid)).toBeNull();
  return err as GuestCpuError;
}

describe('each cpu_mode under the TCG fallback here', () => {
  // The guests boot in parallel: each takes ~4 s of TCG, most of it the kernel.
  let results: Record<string, Booted>;
  beforeAll(async () => {
    expect(host.verdict.usable).toBe(false);
    const cases: Record<string, Partial<NovaletConfig['libvirt']>> = {
      'host-model': { cpu_mode: null },
      custom: { cpu_mode: 'custom', cpu_models: ['Nehalem'], cpu_model_extra_flags: ['+aes', '-popcnt'] },
      'custom-fallback': { cpu_mode: 'custom', cpu_models: ['EPYC-Rome', 'Westmere'], cpu_model_extra_flags: ['-aes', '+avx512f'] },
      'host-passthrough': { cpu_mode: 'host-passthrough' },
      none: { cpu_mode: 'none' },
    };
    const booted = await Promise.all(Object.entries(cases).map(async ([name, libvirt]) => [name, await boot(launcherWith(libvirt), `cpu-${name}`)] as const));
    results = Object.fromEntries(booted);
  }, 240_000);

  it('host-model (nova’s default): what TCG gives as host-model, without the features it disables', () => {
    const { launched, flags } = results['host-model']!;
    expect(launched.virtType).toBe('qemu');
    expect(launched.guestCpu).toEqual({ setting: 'cpu_mode = host-model (EPYC)', substitution: null });
    // EPYC's own features, under TCG.
    for (const flag of ['sse4_2', 'aes', 'avx2', 'bmi2']) expect(flags).toContain(flag);
    // libvirt's host-model for TCG here disables vme.
    expect(flags).not.toContain('vme');
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
    expect(launched.guestCpu.substitution).toContain('EPYC-Rome is not usable under TCG software emulation here, to which instances fall back because KVM is not usable; instances get Westmere');
    expect(launched.guestCpu.substitution).toContain('+avx512f cannot be given under TCG software emulation here');
    // Westmere has pclmulqdq and sse4_2; aes was disabled; avx512f was dropped.
    for (const flag of ['sse4_2', 'pclmulqdq']) expect(flags).toContain(flag);
    for (const flag of ['aes', 'avx512f', 'avx']) expect(flags).not.toContain(flag);
  });

  it('host-passthrough under the fallback: host-model instead, and why', () => {
    const { launched, flags } = results['host-passthrough']!;
    expect(launched.guestCpu.setting).toBe('cpu_mode = host-model (EPYC)');
    expect(launched.guestCpu.substitution).toMatch(/^\[libvirt\] cpu_mode = host-passthrough needs KVM/);
    expect(flags).toContain('avx2');
    expect(flags).not.toContain('vme');
  });

  it('none: QEMU’s default CPU (qemu64), without the SSE4 of the others', () => {
    const { launched, flags } = results.none!;
    expect(launched.guestCpu).toEqual({ setting: 'cpu_mode = none (the hypervisor default CPU)', substitution: null });
    for (const flag of ['sse2', 'lm']) expect(flags).toContain(flag);
    for (const flag of ['ssse3', 'sse4_1', 'sse4_2', 'aes']) expect(flags).not.toContain(flag);
  });
});

describe('settings TCG cannot honour, refused before any guest exists', () => {
  it('host-passthrough with virt_type = qemu', async () => {
    const err = await refusal(launcherWith({ virt_type: 'qemu', cpu_mode: 'host-passthrough' }), 'passthrough-tcg');
    expect(err.code).toBe('CPU_MODE_NEEDS_KVM');
    expect(err.message).toContain('Set [libvirt] cpu_mode = host-model (here EPYC)');
  });

  it('a model TCG cannot give, with virt_type = qemu, names the usable ones', async () => {
    const err = await refusal(launcherWith({ virt_type: 'qemu', cpu_mode: 'custom', cpu_models: ['Skylake-Client'] }), 'skylake-tcg');
    expect(err.code).toBe('CPU_MODEL_UNUSABLE');
    expect(err.message).toMatch(/The usable models are: .*Westmere/);
  });

  it('a flag TCG cannot give, with virt_type = qemu', async () => {
    const err = await refusal(launcherWith({ virt_type: 'qemu', cpu_mode: 'custom', cpu_models: ['Westmere'], cpu_model_extra_flags: ['+avx512f'] }), 'avx512-tcg');
    expect(err.code).toBe('CPU_FLAG_UNAVAILABLE');
    expect(err.message).toBe('[libvirt] cpu_model_extra_flags asks for +avx512f, which Westmere guests cannot have under TCG software emulation here. Remove it from cpu_model_extra_flags: TCG does not emulate it.');
  });

  it('a model libvirt does not know', async () => {
    const err = await refusal(launcherWith({ virt_type: 'qemu', cpu_mode: 'custom', cpu_models: ['Westmare'] }), 'typo');
    expect(err.code).toBe('CPU_MODEL_UNKNOWN');
    expect(err.message).toContain('Did you mean Westmere');
  });
});
