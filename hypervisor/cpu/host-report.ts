import { configuredMachineType } from '../../config/effective-values.js';
import type { LibvirtSection } from '../../config/novalet-config.js';
import { cpuFeaturesToTraits } from './traits.js';
import { customCpuXml, hostCpuXml, hostModelCpuXml } from './api-xml.js';
import { isX86, x86WordSize } from '../host/cpuinfo.js';
import { GuestCpuError, usableModels, type GuestCpuChoice } from './guest-choice.js';
import { checkGuestCpu } from './guest-check.js';
import type { NovaCpuInfo } from '../../messaging/contracts/cpu-info.js';
import type { KvmVerdict } from '../../messaging/contracts/kvm-verdict.js';
import { emulatorFor } from '../host/tools.js';
import { attr, child, children, parseDocument, text } from '../libvirt/capabilities-xml.js';
import { parseCapabilities, type HostCapabilities } from '../libvirt/capabilities.js';
import { parseDomainCapabilities, type DomainCapabilities } from '../libvirt/domain-capabilities.js';
import { BaselineCpu } from '../libvirt/constants.js';
import type { HypervisorCpuTarget, LibvirtConnection } from '../libvirt/connection.js';
import { availableVirtTypes, type EffectiveVirtType, type VirtTypeDecision } from '../virt-type/decision.js';

/**
 * What this host advertises about CPUs (`novalet capabilities`, and what the
 * compute agent reports): nova's cpu_info from libvirt's host capabilities;
 * per virt type available here, the guest CPU models QEMU can give and the
 * host-model CPU (as KubeVirt's node labeller reports them); the guest CPU
 * the configuration gives instances, its full feature list as libvirt
 * expands it, and nova's CPU traits for those features.
 *
 * Field names are snake_case: the report is data for schedulers and scripts,
 * serialised as it is.
 */

export type { NovaCpuInfo } from '../../messaging/contracts/cpu-info.js';

/** The host-model CPU of one virt type, as KubeVirt's node labeller reads it from domain capabilities. */
export interface HostModelReport {
  supported: boolean;
  name: string | null;
  vendor: string | null;
  /** Features with policy='require'. */
  required_features: string[];
  /** Features with policy='disable': in the named model, but not given. */
  disabled_features: string[];
}

export interface VirtTypeCpuReport {
  emulator: string;
  /** The machine type libvirt answered for (its default unless [libvirt] hw_machine_type names one for this architecture). */
  machine: string | null;
  /** Named models QEMU can give under this virt type (guest-choice.ts's usableModels: aliases rather than -vN versions). */
  usable_models: string[];
  host_model: HostModelReport;
  host_passthrough_supported: boolean;
}

export interface GuestCpuReport {
  /** The virt type instances of the host's architecture run with; null when they cannot run. */
  virt_type: EffectiveVirtType | null;
  /** True when virt_type is TCG only because KVM is not usable. */
  fell_back: boolean;
  /** Why that virt type (or why none), as a sentence. */
  virt_type_reason: string;
  /** False when no virt type is available or the CPU configuration cannot be met here. */
  can_run_instances: boolean;
  /** The CPU setting in use, as an operator would write it; null when there is none. */
  setting: string | null;
  /** When the setting differs from the configuration's, which is used instead and why; else null. */
  substitution: string | null;
  /** Why the configured CPU cannot be given here (a GuestCpuError); else null. */
  error: { code: string; message: string } | null;
  /** The model of the guest CPU as libvirt expands it; null when there is no guest CPU. */
  model: string | null;
  /** Every feature the guest CPU has, sorted; null when it is not known (no guest CPU, or not an x86 host). */
  features: string[] | null;
  /** nova's CPU traits for those features, sorted (traits.ts). */
  traits: string[];
}

export interface HostCpuReport {
  cpu_info: NovaCpuInfo;
  kvm: KvmVerdict;
  /** qemu always; kvm only where KVM is usable. */
  virt_types: Partial<Record<EffectiveVirtType, VirtTypeCpuReport>>;
  guest_cpu: GuestCpuReport;
}

export interface HostCpuReportInput {
  connection: LibvirtConnection;
  libvirt: LibvirtSection;
  /** The KVM verdict, with the self-test's evidence (compute-host.ts). */
  verdict: KvmVerdict;
  /** The host's virt type, as the assembly decided it (ComputeHost.virtType). */
  virtType: VirtTypeDecision;
  /** QEMU system emulators by architecture (host/tools.ts: qemuEmulators). */
  emulators: Readonly<Record<string, string>>;
  /** libvirt's host capabilities, when the caller has read them already. */
  capabilities?: HostCapabilities;
}

/** nova's cpu_info from host capabilities: cells is the number of NUMA cells, 1 when libvirt lists no topology. */
export function novaCpuInfo(caps: HostCapabilities): NovaCpuInfo {
  const cpu = caps.host.cpu;
  return {
    arch: cpu.arch,
    model: cpu.model,
    vendor: cpu.vendor,
    topology: {
      cells: caps.host.numaCells ?? 1,
      sockets: cpu.topology?.sockets ?? null,
      cores: cpu.topology?.cores ?? null,
      threads: cpu.topology?.threads ?? null,
    },
    features: [...new Set(cpu.features)].sort(),
  };
}

function hostModelReport(caps: DomainCapabilities): HostModelReport {
  const hostModel = caps.cpu.hostModel;
  const withPolicy = (policy: string) => hostModel.features.filter((f) => f.policy === policy).map((f) => f.name);
  return {
    supported: hostModel.supported,
    name: hostModel.model,
    vendor: hostModel.vendor,
    required_features: withPolicy('require'),
    disabled_features: withPolicy('disable'),
  };
}

/** nova's default CPU model where cpu_mode = none (libvirt/utils.py get_cpu_model_from_arch): QEMU's default CPU. */
function defaultModel(arch: string): string {
  return x86WordSize(arch) === 32 ? 'qemu32' : 'qemu64';
}

/**
 * The `<cpu>` that stands for the chosen guest CPU before its extra flags:
 * host-model is the domain capabilities' host-model CPU; custom is
 * the chosen model; host-passthrough is the host CPU; none is QEMU's default
 * CPU. null when there is nothing to expand.
 */
function unexpandedCpu(choice: GuestCpuChoice, caps: HostCapabilities, domainCaps: DomainCapabilities): string | null {
  const cpu = choice.cpu;
  if (cpu === null) return customCpuXml(defaultModel(caps.host.arch), null, []);
  if (cpu.mode === 'host-model') return hostModelCpuXml(domainCaps);
  if (cpu.mode === 'custom') return cpu.model === null ? null : customCpuXml(cpu.model, null, []);
  const model = caps.host.cpu.model;
  return model === null ? null : hostCpuXml({ ...caps.host.cpu, model });
}

/** The model and the features present (no policy, or 'require') of an expanded `<cpu>` from libvirt. */
function readExpandedCpu(xml: string): { model: string | null; features: string[] } {
  const cpu = parseDocument('expanded guest CPU', xml, 'cpu');
  return {
    model: text(child(cpu, 'model')),
    features: children(cpu, 'feature')
      .filter((f) => {
        const policy = attr(f, 'policy');
        return policy === null || policy === 'require' || policy === 'force';
      })
      .map((f) => attr(f, 'name'))
      .filter((name): name is string => name !== null),
  };
}

/**
 * The guest CPU's full feature list: the `<cpu>` expanded by libvirt
 * (virConnectBaselineHypervisorCPU with EXPAND_FEATURES, for the emulator
 * and virt type instances run with), features libvirt marks 'disable'
 * dropped, then cpu_model_extra_flags applied (+flag adds, -flag removes).
 */
async function guestFeatures(
  connection: LibvirtConnection,
  choice: GuestCpuChoice,
  caps: HostCapabilities,
  domainCaps: DomainCapabilities,
  target: HypervisorCpuTarget,
): Promise<{ model: string | null; features: string[] | null }> {
  const xml = unexpandedCpu(choice, caps, domainCaps);
  if (xml === null) return { model: null, features: null };
  const expanded = readExpandedCpu(await connection.baselineHypervisorCpu([xml], target, BaselineCpu.EXPAND_FEATURES));
  const features = new Set(expanded.features);
  for (const flag of choice.cpu?.features ?? []) {
    if (flag.policy === 'require') features.add(flag.name);
    else features.delete(flag.name);
  }
  return { model: expanded.model, features: [...features].sort() };
}

/**
 * Gathers the report over one libvirt connection. Throws NovaletError when
 * there is no QEMU emulator for the host's architecture; libvirt's own
 * failures come as LibvirtErrors. A configured CPU that cannot be given here
 * is not thrown: it is the report's guest_cpu.error.
 */
export async function gatherHostCpuReport(input: HostCpuReportInput): Promise<HostCpuReport> {
  const { connection, libvirt, verdict, virtType: decision } = input;
  const caps = input.capabilities ?? parseCapabilities(await connection.getCapabilities());
  const arch = caps.host.arch;
  const listed = caps.guests.find((g) => g.arch === arch && g.osType === 'hvm')?.emulator;
  const emulator = emulatorFor({ ...(listed ? { [arch]: listed } : {}), ...input.emulators }, arch);
  const machine = configuredMachineType(libvirt.hw_machine_type, arch);

  const domainCaps = new Map<EffectiveVirtType, DomainCapabilities>();
  const virtTypes: Partial<Record<EffectiveVirtType, VirtTypeCpuReport>> = {};
  for (const virtType of availableVirtTypes(verdict)) {
    const query = { emulatorbin: emulator, arch, virttype: virtType, ...(machine ? { machine } : {}) };
    const parsed = parseDomainCapabilities(await connection.getDomainCapabilities(query));
    domainCaps.set(virtType, parsed);
    virtTypes[virtType] = {
      emulator: parsed.path,
      machine: parsed.machine,
      usable_models: usableModels(parsed),
      host_model: hostModelReport(parsed),
      host_passthrough_supported: parsed.cpu.hostPassthrough.supported,
    };
  }

  const guest: GuestCpuReport = {
    virt_type: decision.effective,
    fell_back: decision.fellBack,
    virt_type_reason: decision.reason,
    can_run_instances: decision.effective !== null,
    setting: null,
    substitution: null,
    error: null,
    model: null,
    features: null,
    traits: [],
  };
  const effectiveCaps = decision.effective === null ? undefined : domainCaps.get(decision.effective);
  if (decision.effective !== null && effectiveCaps !== undefined) {
    let choice: GuestCpuChoice | null = null;
    try {
      choice = await checkGuestCpu({ connection, libvirt, virtType: decision.effective, fellBack: decision.fellBack, emulator, arch, domainCapabilities: effectiveCaps });
    } catch (err) {
      if (!(err instanceof GuestCpuError)) throw err;
      guest.can_run_instances = false;
      guest.error = { code: err.code, message: err.message };
    }
    if (choice !== null) {
      guest.setting = choice.setting;
      guest.substitution = choice.substitution;
      if (isX86(arch)) {
        const target: HypervisorCpuTarget = { emulator, arch, virttype: decision.effective, ...(machine ? { machine } : {}) };
        const { model, features } = await guestFeatures(connection, choice, caps, effectiveCaps, target);
        guest.model = model;
        guest.features = features;
        guest.traits = features === null ? [] : cpuFeaturesToTraits(features);
      }
    }
  }
  return { cpu_info: novaCpuInfo(caps), kvm: verdict, virt_types: virtTypes, guest_cpu: guest };
}
