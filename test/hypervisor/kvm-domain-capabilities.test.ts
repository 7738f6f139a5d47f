/**
 * The KVM side of the guest CPU, for real. Wherever /dev/kvm answers,
 * libvirt's domain capabilities for virttype=kvm answer too (QEMU probes
 * CPUID through /dev/kvm) — on the PVM build machines as well, where KVM
 * cannot run an ordinary guest — and their usable models differ from TCG's:
 * the PVM machines' KVM offers only old CPUs, a bare-metal host's KVM more
 * than TCG. With the verdict forced to "usable" — as if the self-test had
 * passed — one configuration gets a different guest CPU under KVM than under
 * the TCG fallback, whichever way the lists differ here. Where /dev/kvm does
 * not answer, libvirt refuses KVM in the words the KVM fault maps.
 */
import { existsSync, statSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfigText } from '../../config/load-config.js';
import type { LibvirtSection } from '../../config/novalet-config.js';
import { checkGuestCpu } from '../../hypervisor/cpu/guest-check.js';
import { usableModels, virtTypeWords } from '../../hypervisor/cpu/guest-choice.js';
import { gatherHostCpuReport, type HostCpuReport } from '../../hypervisor/cpu/host-report.js';
import { parseDomainCapabilities, type DomainCapabilities } from '../../hypervisor/libvirt/domain-capabilities.js';
import type { LibvirtConnection } from '../../hypervisor/libvirt/connection.js';
import { LibvirtError } from '../../hypervisor/libvirt/error.js';
import { isLibvirtKvmMissing } from '../../hypervisor/virt-type/kvm-fault.js';
import { decideVirtType } from '../../hypervisor/virt-type/decision.js';
import { openTestRoot } from '../libvirt/libvirt-test-support.js';

const EMULATOR = '/usr/bin/qemu-system-x86_64';
const libvirt = (lines: string): LibvirtSection => parseConfigText(`[libvirt]\nvirt_type = kvm\n${lines}\n`, 'nova.conf').values.libvirt;
const kvmDeviceHere = existsSync('/dev/kvm') && statSync('/dev/kvm').isCharacterDevice();

let connection: LibvirtConnection;
/** null where libvirt refuses KVM (no /dev/kvm); `refusal` then says how. */
let kvm: DomainCapabilities | null;
let refusal: unknown;
let tcg: DomainCapabilities;
/** A model only one of the virt types gives here (null when both give the same), and one both give. */
let onlyOne: { model: string; virtType: 'kvm' | 'qemu' } | null;
let both: string;

beforeAll(async () => {
  connection = (await openTestRoot()).connection;
  const caps = (virttype: string) => connection.getDomainCapabilities({ emulatorbin: EMULATOR, arch: 'x86_64', virttype }).then(parseDomainCapabilities);
  tcg = await caps('qemu');
  kvm = await caps('kvm').catch((err: unknown) => {
    refusal = err;
    return null;
  });
  if (kvm === null) return;
  const [kvmUsable, tcgUsable] = [usableModels(kvm), usableModels(tcg)];
  const tcgOnly = ['Westmere', 'Nehalem', ...tcgUsable].find((m) => tcgUsable.includes(m) && !kvmUsable.includes(m));
  const kvmOnly = kvmUsable.find((m) => !tcgUsable.includes(m));
  onlyOne = tcgOnly ? { model: tcgOnly, virtType: 'qemu' } : kvmOnly ? { model: kvmOnly, virtType: 'kvm' } : null;
  both = tcgUsable.find((m) => kvmUsable.includes(m)) as string;
}, 120_000);

afterAll(async () => {
  await connection?.close();
});

const check = (lines: string, virtType: 'kvm' | 'qemu', fellBack: boolean) =>
  checkGuestCpu({ connection, libvirt: libvirt(lines), virtType, fellBack, emulator: EMULATOR, arch: 'x86_64' });
/** The other virt type, and whether TCG there is the fallback from KVM. */
const other = (virtType: 'kvm' | 'qemu') => (virtType === 'kvm' ? { virtType: 'qemu' as const, fellBack: true } : { virtType: 'kvm' as const, fellBack: false });

describe("libvirt's domain capabilities for kvm and qemu on this machine", () => {
  it('kvm answers exactly where /dev/kvm does, passing the host CPU through; TCG never does', () => {
    expect(tcg.cpu.hostPassthrough.supported).toBe(false);
    expect(kvm !== null).toBe(kvmDeviceHere);
    if (kvm === null) {
      expect(refusal).toBeInstanceOf(LibvirtError);
      expect(isLibvirtKvmMissing((refusal as LibvirtError).libvirtMessage)).toBe(true);
      return;
    }
    expect(kvm.domain).toBe('kvm');
    expect(kvm.cpu.hostPassthrough.supported).toBe(true);
    expect(both, 'a model usable under both').toBeTruthy();
  });
});

describe('one configuration, KVM usable or fallen back to TCG', () => {
  it('cpu_models = <a model only one virt type gives>, <one both give>: each virt type gets the first it can, and says so', async () => {
    if (kvm === null) return expect((await check('', 'kvm', false).catch((e: unknown) => e)) as LibvirtError).toBeInstanceOf(LibvirtError);
    if (onlyOne === null) {
      // Both offer the same models here: the first usable one under each.
      expect((await check(`cpu_mode = custom\ncpu_models = ${both}`, 'kvm', false)).cpu?.model).toBe(both);
      expect((await check(`cpu_mode = custom\ncpu_models = ${both}`, 'qemu', true)).cpu?.model).toBe(both);
      return;
    }
    const lines = `cpu_mode = custom\ncpu_models = ${onlyOne.model}, ${both}`;
    const gives = await check(lines, onlyOne.virtType, onlyOne.virtType === 'qemu');
    expect(gives.cpu?.model).toBe(onlyOne.model);
    expect(gives.substitution).toBeNull();
    const elsewhere = other(onlyOne.virtType);
    const skips = await check(lines, elsewhere.virtType, elsewhere.fellBack);
    expect(skips.cpu?.model).toBe(both);
    expect(skips.substitution).toContain(`${onlyOne.model}`);
    expect(skips.substitution).toContain(`is not usable under ${virtTypeWords(elsewhere.virtType)} here`);
    expect(skips.substitution).toContain(`instances get ${both}, the first usable one.`);
  });

  it('a model the virt type cannot give, alone and without a fallback: refused, naming the usable ones', async () => {
    if (kvm === null || onlyOne === null || onlyOne.virtType === 'kvm') {
      // Here TCG is the side that lacks models: refused with virt_type = qemu.
      const model = [...tcg.cpu.custom.models].reverse().find((m) => m.usable === 'no' && !/-v\d+$/.test(m.name))!.name;
      const err = await check(`cpu_mode = custom\ncpu_models = ${model}`, 'qemu', false).then(() => null, (e: unknown) => e as { code: string; message: string });
      expect(err?.code).toBe('CPU_MODEL_UNUSABLE');
      expect(err?.message).toContain(`The usable models are: ${usableModels(tcg).join(', ')}.`);
      return;
    }
    const err = await check(`cpu_mode = custom\ncpu_models = ${onlyOne.model}`, 'kvm', false).then(
      () => null,
      (e: unknown) => e as { code: string; message: string },
    );
    expect(err?.code).toBe('CPU_MODEL_UNUSABLE');
    expect(err?.message).toContain(`[libvirt] cpu_models = ${onlyOne.model}: none is usable under KVM here`);
    expect(err?.message).toContain(`The usable models are: ${usableModels(kvm).join(', ')}.`);
  });

  it('host-passthrough: kept under KVM, host-model under the fallback', async () => {
    const fallen = await check('cpu_mode = host-passthrough', 'qemu', true);
    expect(fallen.cpu?.mode).toBe('host-model');
    expect(fallen.substitution).toMatch(/^\[libvirt\] cpu_mode = host-passthrough needs KVM/);
    if (kvm === null) return;
    const underKvm = await check('cpu_mode = host-passthrough', 'kvm', false);
    expect(underKvm).toMatchObject({ cpu: { mode: 'host-passthrough' }, setting: 'cpu_mode = host-passthrough', substitution: null });
  });

  it('host-model is named after what each virt type resolves it to', async () => {
    expect((await check('', 'qemu', true)).setting).toBe(`cpu_mode = host-model (${tcg.cpu.hostModel.model})`);
    if (kvm !== null) expect((await check('', 'kvm', false)).setting).toBe(`cpu_mode = host-model (${kvm.cpu.hostModel.model})`);
  });
});

describe('the capability report where KVM is usable', () => {
  let report: HostCpuReport | null = null;
  beforeAll(async () => {
    if (!kvmDeviceHere) return;
    report = await gatherHostCpuReport({
      connection,
      libvirt: libvirt('cpu_mode = host-passthrough'),
      verdict: { usable: true, reasons: [] },
      virtType: decideVirtType({ libvirt: libvirt('cpu_mode = host-passthrough'), verdict: { usable: true, reasons: [] }, hostArch: 'x86_64' }),
      emulators: { x86_64: EMULATOR },
    });
  }, 120_000);

  it('lists both virt types, each with its own usable models and host-model', () => {
    expect(report !== null).toBe(kvmDeviceHere);
    if (report === null || kvm === null) return;
    expect(Object.keys(report.virt_types).sort()).toEqual(['kvm', 'qemu']);
    expect(report.virt_types.qemu?.usable_models).toEqual(usableModels(tcg));
    expect(report.virt_types.kvm?.usable_models).toEqual(usableModels(kvm));
    expect(report.virt_types.kvm?.host_model.name).toBe(kvm.cpu.hostModel.model);
    expect(report.virt_types.kvm?.host_passthrough_supported).toBe(true);
  });

  it("host-passthrough under KVM: the host CPU's features, and nova's traits for them", () => {
    if (report === null) return expect(kvmDeviceHere).toBe(false);
    const guest = report.guest_cpu;
    expect(guest).toMatchObject({ virt_type: 'kvm', fell_back: false, setting: 'cpu_mode = host-passthrough', error: null });
    // The host CPU's own features are all there, but osxsave and ospke: the guest's OS sets those bits
    // (CR4.OSXSAVE, CR4.PKE), no hypervisor can give them.
    const setByTheOs = new Set(['osxsave', 'ospke']);
    for (const feature of report.cpu_info.features.filter((f) => !setByTheOs.has(f))) expect(guest.features).toContain(feature);
    expect(guest.traits).toContain('HW_CPU_X86_SSE2');
    // Traits follow the features: vmx/svm traits exactly when the host CPU has them.
    const hasVmx = report.cpu_info.features.includes('vmx');
    expect(guest.traits.includes('HW_CPU_X86_VMX')).toBe(hasVmx);
  });
});
