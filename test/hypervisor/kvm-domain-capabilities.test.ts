/**
 * The KVM side of the guest CPU, for real. On these PVM guests KVM cannot
 * run an ordinary guest, but libvirt's domain capabilities for virttype=kvm
 * still answer (QEMU probes CPUID through /dev/kvm), and they differ from
 * TCG's: this KVM offers only old CPUs (pentium3 and older), TCG offers up
 * to Westmere/Nehalem. With the verdict forced to "usable" — as if the
 * self-test had passed — the same configuration gets a different guest CPU
 * under KVM than under the TCG fallback, and the capability report lists
 * both virt types.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfigText } from '../../config/load-config.js';
import type { LibvirtSection } from '../../config/novalet-config.js';
import { checkGuestCpu } from '../../hypervisor/cpu/guest-check.js';
import { usableModels } from '../../hypervisor/cpu/guest-choice.js';
import { gatherHostCpuReport, type HostCpuReport } from '../../hypervisor/cpu/host-report.js';
import { parseDomainCapabilities, type DomainCapabilities } from '../../hypervisor/libvirt/domain-capabilities.js';
import type { LibvirtConnection } from '../../hypervisor/libvirt/connection.js';
import { openTestRoot } from '../libvirt/libvirt-test-support.js';

const EMULATOR = '/usr/bin/qemu-system-x86_64';
const libvirt = (lines: string): LibvirtSection => parseConfigText(`[libvirt]\nvirt_type = kvm\n${lines}\n`, 'nova.conf').values.libvirt;

let connection: LibvirtConnection;
let kvm: DomainCapabilities;
let tcg: DomainCapabilities;
/** A model TCG gives here and this KVM cannot, and one both give. */
let tcgOnly: string;
let both: string;

beforeAll(async () => {
  connection = (await openTestRoot()).connection;
  const caps = (virttype: string) => connection.getDomainCapabilities({ emulatorbin: EMULATOR, arch: 'x86_64', virttype }).then(parseDomainCapabilities);
  [kvm, tcg] = [await caps('kvm'), await caps('qemu')];
  const kvmUsable = new Set(usableModels(kvm));
  tcgOnly = ['Westmere', 'Nehalem', ...usableModels(tcg)].find((m) => usableModels(tcg).includes(m) && !kvmUsable.has(m)) as string;
  both = usableModels(tcg).find((m) => kvmUsable.has(m)) as string;
}, 120_000);

afterAll(async () => {
  await connection?.close();
});

const check = (lines: string, virtType: 'kvm' | 'qemu', fellBack: boolean) =>
  checkGuestCpu({ connection, libvirt: libvirt(lines), virtType, fellBack, emulator: EMULATOR, arch: 'x86_64' });

describe("libvirt's domain capabilities for kvm and qemu on this machine", () => {
  it('differ: KVM passes the host CPU through; TCG offers models this KVM cannot', () => {
    expect(kvm.domain).toBe('kvm');
    expect(kvm.cpu.hostPassthrough.supported).toBe(true);
    expect(tcg.cpu.hostPassthrough.supported).toBe(false);
    expect(tcgOnly, `a model usable under TCG but not KVM; KVM: ${usableModels(kvm).join(', ')}`).toBeTruthy();
    expect(both, 'a model usable under both').toBeTruthy();
  });
});

describe('one configuration, KVM usable or fallen back to TCG', () => {
  it('cpu_models = <a model only TCG gives>, <one both give>: the first under the TCG fallback, the second under KVM, said', async () => {
    const lines = `cpu_mode = custom\ncpu_models = ${tcgOnly}, ${both}`;
    const fallen = await check(lines, 'qemu', true);
    expect(fallen.cpu?.model).toBe(tcgOnly);
    expect(fallen.substitution).toBeNull();
    const underKvm = await check(lines, 'kvm', false);
    expect(underKvm.cpu?.model).toBe(both);
    expect(underKvm.substitution).toContain(`${tcgOnly} is not usable under KVM here; instances get ${both}, the first usable one.`);
  });

  it('a KVM that offers only old CPUs: a newer model alone is refused, naming the usable ones', async () => {
    const err = await check(`cpu_mode = custom\ncpu_models = ${tcgOnly}`, 'kvm', false).then(
      () => null,
      (e: unknown) => e as { code: string; message: string },
    );
    expect(err?.code).toBe('CPU_MODEL_UNUSABLE');
    expect(err?.message).toContain(`[libvirt] cpu_models = ${tcgOnly}: none is usable under KVM here`);
    expect(err?.message).toContain(`The usable models are: ${usableModels(kvm).join(', ')}.`);
  });

  it('host-passthrough: kept under KVM, host-model under the fallback', async () => {
    const underKvm = await check('cpu_mode = host-passthrough', 'kvm', false);
    expect(underKvm).toMatchObject({ cpu: { mode: 'host-passthrough' }, setting: 'cpu_mode = host-passthrough', substitution: null });
    const fallen = await check('cpu_mode = host-passthrough', 'qemu', true);
    expect(fallen.cpu?.mode).toBe('host-model');
    expect(fallen.substitution).toMatch(/^\[libvirt\] cpu_mode = host-passthrough needs KVM/);
  });

  it('host-model is named after what each virt type resolves it to', async () => {
    expect((await check('', 'kvm', false)).setting).toBe(`cpu_mode = host-model (${kvm.cpu.hostModel.model})`);
    expect((await check('', 'qemu', true)).setting).toBe(`cpu_mode = host-model (${tcg.cpu.hostModel.model})`);
  });
});

describe('the capability report where KVM is usable', () => {
  let report: HostCpuReport;
  beforeAll(async () => {
    report = await gatherHostCpuReport({
      connection,
      libvirt: libvirt('cpu_mode = host-passthrough'),
      verdict: { usable: true, reasons: [] },
      emulators: { x86_64: EMULATOR },
    });
  }, 120_000);

  it('lists both virt types, each with its own usable models and host-model', () => {
    expect(Object.keys(report.virt_types).sort()).toEqual(['kvm', 'qemu']);
    expect(report.virt_types.qemu?.usable_models).toContain(tcgOnly);
    expect(report.virt_types.kvm?.usable_models).not.toContain(tcgOnly);
    expect(report.virt_types.kvm?.host_model.name).toBe(kvm.cpu.hostModel.model);
    expect(report.virt_types.kvm?.host_passthrough_supported).toBe(true);
  });

  it("host-passthrough under KVM: the host CPU's features, and nova's traits for them", () => {
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
