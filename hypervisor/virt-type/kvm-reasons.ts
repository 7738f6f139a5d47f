/**
 * Why KVM is unusable here, in words: each reason a stable code, a sentence
 * saying what is wrong and a remedy that ends with the TCG fallback. Which
 * reasons apply is decided in decision.ts; this file only says them.
 */
import type { HostProbe } from '../host/facts.js';
import type { KvmReason, KvmReasonCode } from '../../messaging/contracts/kvm-verdict.js';
import type { SelfTestOutcome } from './self-test.js';
import { KVM_STABLE_API_VERSION } from '../host/kvm-ioctls.js';

/** The last sentence of every remedy. */
export const TCG_FALLBACK_SENTENCE =
  'Or run instances under TCG software emulation: set [libvirt] virt_type = qemu (novalet does this by itself while [libvirt] fallback_virt_type = qemu).';

type CpuMaker = 'intel' | 'amd' | null;

function cpuMaker(probe: HostProbe): CpuMaker {
  if (probe.cpu.vendor === 'GenuineIntel') return 'intel';
  if (probe.cpu.vendor === 'AuthenticAMD' || probe.cpu.vendor === 'HygonGenuine') return 'amd';
  return null;
}

/** Whether this host is itself a virtual machine, by any evidence. */
export function isVirtualMachine(probe: HostProbe): boolean {
  return probe.hypervisor.cpuFlag || probe.hypervisor.name !== null || probe.hypervisor.xen;
}

/**
 * A short phrase for what this host is: "bare metal", "a virtual machine
 * under VMware", "a virtual machine under an unidentified hypervisor", with
 * " (inside a docker container)" when one is seen.
 */
export function describeOuterHypervisor(probe: HostProbe): string {
  const { name, container } = probe.hypervisor;
  const what = !isVirtualMachine(probe)
    ? 'bare metal'
    : `a virtual machine under ${name ?? 'an unidentified hypervisor'}`;
  return container === null ? what : `${what} (inside a ${container} container)`;
}

function reason(code: KvmReasonCode, message: string, remedy: string): KvmReason {
  return { code, message, remedy: `${remedy} ${TCG_FALLBACK_SENTENCE}` };
}

function vendorModules(maker: CpuMaker): string {
  if (maker === 'intel') return 'kvm_intel';
  if (maker === 'amd') return 'kvm_amd';
  return 'kvm_intel (Intel) or kvm_amd (AMD)';
}

function modprobeCommand(maker: CpuMaker): string {
  if (maker === 'intel') return '`modprobe kvm_intel`';
  if (maker === 'amd') return '`modprobe kvm_amd`';
  return '`modprobe kvm_intel` (Intel) or `modprobe kvm_amd` (AMD)';
}

function extensionNames(maker: CpuMaker): string {
  if (maker === 'intel') return 'Intel VT-x';
  if (maker === 'amd') return 'AMD-V';
  return 'VT-x/AMD-V';
}

// --- the reasons -----------------------------------------------------------

export function noHardwareVirtualizationOnBareMetal(probe: HostProbe): KvmReason {
  const maker = cpuMaker(probe);
  const cpu = probe.cpu.modelName ?? probe.cpu.vendor ?? 'this CPU';
  const firmware =
    maker === 'intel'
      ? 'Enable Intel VT-x ("Intel Virtualization Technology") in the firmware (BIOS/UEFI) setup and power-cycle the host.'
      : maker === 'amd'
        ? 'Enable AMD-V ("SVM Mode") in the firmware (BIOS/UEFI) setup and power-cycle the host.'
        : 'Enable Intel VT-x ("Intel Virtualization Technology") or AMD-V ("SVM Mode") in the firmware (BIOS/UEFI) setup and power-cycle the host.';
  return reason(
    'NO_HW_VIRT_BARE_METAL',
    `The CPU (${cpu}) shows neither vmx (Intel VT-x) nor svm (AMD-V) in /proc/cpuinfo, and no hypervisor flag: its virtualization extensions are switched off in the firmware or absent.`,
    firmware,
  );
}

const NESTING_REMEDIES: Record<string, string> = {
  VMware:
    'On VMware ESXi, power the VM off and enable "Expose hardware assisted virtualization to the guest OS" in its CPU settings (vhv.enable = "TRUE").',
  'QEMU/KVM':
    'On the KVM host beneath, load kvm_intel or kvm_amd with nested=1 (e.g. `options kvm_intel nested=1` in /etc/modprobe.d) and give this VM a CPU model with vmx/svm (host-passthrough).',
  'Microsoft Hyper-V':
    'On the Hyper-V host, with the VM off, run Set-VMProcessor -VMName <vm> -ExposeVirtualizationExtensions $true.',
  Xen: 'On the Xen host, set nestedhvm=1 in this domain\'s configuration (HVM guests only) and restart it.',
  VirtualBox: 'In VirtualBox, power the VM off and enable nested VT-x/AMD-V (VBoxManage modifyvm <vm> --nested-hw-virt on).',
  'Amazon EC2': 'On Amazon EC2, run this host on a bare-metal (*.metal) instance type, which has VT-x.',
  'Google Compute Engine': 'On Google Compute Engine, create the VM with nested virtualization enabled (gcloud compute instances create … --enable-nested-virtualization) on an Intel machine type.',
};

const UNKNOWN_HYPERVISOR_REMEDY = [
  'Make the hypervisor beneath expose VT-x/AMD-V to this VM:',
  'on VMware ESXi enable "Expose hardware assisted virtualization to the guest OS" in the VM\'s CPU settings;',
  'on a KVM host load kvm_intel/kvm_amd with nested=1 and give this VM a CPU model with vmx/svm (host-passthrough);',
  'on Hyper-V run Set-VMProcessor -VMName <vm> -ExposeVirtualizationExtensions $true;',
  'on Xen set nestedhvm=1 in the domain\'s configuration.',
].join(' ');

export function noHardwareVirtualizationInVm(probe: HostProbe): KvmReason {
  const name = probe.hypervisor.name;
  const beneath = name === null ? 'the hypervisor beneath' : `the hypervisor beneath (${name})`;
  return reason(
    'NO_HW_VIRT_IN_VM',
    `This host is ${describeOuterHypervisor(probe)} and its CPU shows neither vmx (Intel VT-x) nor svm (AMD-V) in /proc/cpuinfo: ${beneath} does not expose hardware virtualization to this guest.`,
    (name !== null ? NESTING_REMEDIES[name] : undefined) ?? UNKNOWN_HYPERVISOR_REMEDY,
  );
}

export function deviceMissing(probe: HostProbe, hardwareReason: KvmReasonCode | null): KvmReason {
  const { path } = probe.kvmDevice;
  const maker = cpuMaker(probe);
  const container = probe.hypervisor.container;
  if (container !== null) {
    return reason(
      'KVM_DEVICE_MISSING',
      `${path} does not exist in this ${container} container.`,
      `Pass the host's device into the container (e.g. \`docker run --device /dev/kvm\`, \`podman run --device /dev/kvm\`), after making sure /dev/kvm exists on the host (${modprobeCommand(maker)} there).`,
    );
  }
  const module = probe.kvmModule.name;
  if (module !== null) {
    return reason(
      'KVM_DEVICE_MISSING',
      `${path} does not exist although the ${module} module is loaded.`,
      'Create the device node: `udevadm trigger --subsystem-match=misc` or `mknod /dev/kvm c 10 232` (then `chgrp kvm /dev/kvm; chmod 0660 /dev/kvm`).',
    );
  }
  const moduleName = maker === 'amd' ? 'kvm_amd' : 'kvm_intel';
  const cause = hardwareReason === null ? '' : ` (see ${hardwareReason})`;
  return reason(
    'KVM_DEVICE_MISSING',
    `${path} does not exist: no KVM module (${vendorModules(maker)}) is loaded.`,
    `Load the KVM module: ${modprobeCommand(maker)}; if modprobe says \`modprobe: ERROR: could not insert '${moduleName}': Operation not supported\`, the CPU does not offer ${extensionNames(maker)} to this system${cause}.`,
  );
}

export function deviceNotAccessible(probe: HostProbe, errno: string): KvmReason {
  const { path } = probe.kvmDevice;
  const container = probe.hypervisor.container;
  const inContainer =
    container === null
      ? ''
      : ` In a ${container} container, also let the container use the device (\`--device /dev/kvm\`; a device cgroup that does not allow it answers EPERM).`;
  return reason(
    'KVM_DEVICE_NOT_ACCESSIBLE',
    `${path} exists but this process may not open it read-write (${errno}).`,
    `Add the user running novalet to the \`kvm\` group (\`usermod -aG kvm <user>\`, then start novalet again), or run it as root; ${path} should be owned by group kvm with mode 0660.${inContainer}`,
  );
}

export function deviceOpenFailed(probe: HostProbe, errno: string): KvmReason {
  const { path } = probe.kvmDevice;
  return reason(
    'KVM_DEVICE_OPEN_FAILED',
    `${path} exists but opening it read-write failed with ${errno}.`,
    `ENXIO or ENODEV mean that no KVM driver is behind the node: load ${vendorModules(cpuMaker(probe))} (${modprobeCommand(cpuMaker(probe))}) and look at \`dmesg | grep -i kvm\`.`,
  );
}

export function deviceNotChar(probe: HostProbe): KvmReason {
  const { path, apiVersionError } = probe.kvmDevice;
  return reason(
    'KVM_DEVICE_NOT_CHAR',
    `${path} is not a character device, so it is not KVM's device: KVM_GET_API_VERSION on it failed with ${apiVersionError ?? 'an error'}.`,
    `Remove what is mounted or created at ${path} (\`findmnt ${path}\`) and let the KVM module provide the real device (character device 10:232).`,
  );
}

export function apiVersionWrong(probe: HostProbe): KvmReason {
  const { path, apiVersion, apiVersionError } = probe.kvmDevice;
  const answer = apiVersion === null ? `failed with ${apiVersionError ?? 'an error'}` : `returned ${apiVersion}`;
  return reason(
    'KVM_API_VERSION',
    `KVM_GET_API_VERSION on ${path} ${answer}, not ${KVM_STABLE_API_VERSION}: the kernel's KVM is not the stable KVM API that QEMU needs.`,
    `Run a kernel whose KVM answers API version ${KVM_STABLE_API_VERSION} (every mainline Linux since 2.6.22), with kvm_intel or kvm_amd.`,
  );
}

export function createVmFailed(probe: HostProbe, errno: string): KvmReason {
  const { path } = probe.kvmDevice;
  return reason(
    'KVM_CREATE_VM_FAILED',
    `KVM_CREATE_VM on ${path} failed with ${errno}: the kernel's KVM refuses to create virtual machines.`,
    'Look at `dmesg | grep -i kvm` for the cause (another hypervisor holding VT-x/AMD-V, memory, a security module), fix it and reload the KVM module.',
  );
}

export function pvmModule(): KvmReason {
  return reason(
    'KVM_MODULE_PVM',
    'The KVM module is kvm_pvm, which runs only guests built for PVM (Pagetable-based Virtual Machine), not ordinary guests: they start, show as running and hang after the firmware.',
    'Run ordinary guests on a host whose KVM module is kvm_intel or kvm_amd.',
  );
}

export function noVendorModule(probe: HostProbe): KvmReason {
  const maker = cpuMaker(probe);
  return reason(
    'KVM_NO_VENDOR_MODULE',
    `${probe.kvmDevice.path} answers and creates VMs, but none of the KVM vendor modules novalet knows (kvm_intel, kvm_amd, kvm_pvm) is under /sys/module: this is a KVM implementation novalet cannot vouch for, and ioctls alone do not show that ordinary guests boot on it.`,
    `Use ${vendorModules(maker)} (${modprobeCommand(maker)}) for KVM.`,
  );
}

export function selfTestFailed(selfTest: SelfTestOutcome): KvmReason {
  return reason(
    'KVM_SELFTEST_FAILED',
    `A test guest booted under KVM did not reach user space: ${selfTest.detail.replace(/\.$/, '')}; KVM does not really run guests here, whatever /dev/kvm answers.`,
    'Find out why with `novalet validate` and dmesg; on a VM, make the hypervisor beneath expose VT-x/AMD-V properly.',
  );
}
