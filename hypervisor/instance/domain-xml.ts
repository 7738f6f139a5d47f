import { XMLBuilder } from '../libvirt/fast-xml-parser.js';
import type { GuestCpu } from '../cpu/guest.js';
import { isX86 } from '../host/cpuinfo.js';
import { metadataElement, type InstanceMetadata } from './metadata.js';

/**
 * libvirt domain XML for an instance, built as data with fast-xml-parser's
 * builder — never by pasting strings — so that a name or metadata holding
 * `<`, `&`, quotes or `]]>` is escaped, not interpreted.
 */

export interface DomainDefinition {
  uuid: string;
  /** libvirt's domain name (novalet-<uuid>): unique and safe on every host. */
  domainName: string;
  virtType: 'kvm' | 'qemu';
  arch: string;
  /** Machine type, or null for libvirt's default for the architecture. */
  machine: string | null;
  emulator: string;
  vcpus: number;
  memoryMiB: number;
  /** The instance's root disk (a qcow2 overlay), if any. */
  disk: { path: string; format: 'qcow2' | 'raw' } | null;
  kernel: string | null;
  initrd: string | null;
  cmdline: string | null;
  /** Where the serial console is written. */
  consoleLog: string;
  cpu: GuestCpu | null;
  metadata: InstanceMetadata;
}

/** Every domain novalet makes is named so: others on a shared libvirtd are not ours. */
export const NOVALET_DOMAIN_PREFIX = 'novalet-';

export function domainNameFor(uuid: string): string {
  return `${NOVALET_DOMAIN_PREFIX}${uuid}`;
}

const builder = new XMLBuilder({
  ignoreAttributes: false,
  attributeNamePrefix: '@_',
  format: true,
  suppressEmptyNode: true,
  processEntities: true,
});

function cpuElement(cpu: GuestCpu | null): Record<string, unknown> | undefined {
  if (cpu === null) return undefined;
  const features = cpu.features.map((f) => ({ '@_policy': f.policy, '@_name': f.name }));
  if (cpu.mode === 'custom') {
    return {
      '@_mode': 'custom',
      '@_match': 'exact',
      '@_check': cpu.check ?? 'partial',
      model: { '@_fallback': 'forbid', '#text': cpu.model ?? '' },
      feature: features,
    };
  }
  return { '@_mode': cpu.mode, feature: features };
}

function osElement(def: DomainDefinition): Record<string, unknown> {
  const type: Record<string, unknown> = { '@_arch': def.arch, '#text': 'hvm' };
  if (def.machine) type['@_machine'] = def.machine;
  const os: Record<string, unknown> = { type };
  if (def.kernel) {
    os.kernel = def.kernel;
    if (def.initrd) os.initrd = def.initrd;
    if (def.cmdline) os.cmdline = def.cmdline;
  } else {
    os.boot = { '@_dev': 'hd' };
  }
  // nova's sysinfo: the guest can read its UUID as the SMBIOS serial.
  if (isX86(def.arch)) os.smbios = { '@_mode': 'sysinfo' };
  return os;
}

function devices(def: DomainDefinition): Record<string, unknown> {
  const devs: Record<string, unknown> = { emulator: def.emulator };
  if (def.disk) {
    devs.disk = {
      '@_type': 'file',
      '@_device': 'disk',
      driver: { '@_name': 'qemu', '@_type': def.disk.format, '@_cache': 'none', '@_discard': 'unmap' },
      source: { '@_file': def.disk.path },
      target: { '@_dev': 'vda', '@_bus': 'virtio' },
    };
  }
  // libvirt adds a USB controller unless told not to (piix3-uhci on pc, with a
  // PCI slot and a driver the guest probes): a guest with no graphics, tablet
  // or USB device, as every novalet guest is, has no use for it (bench/RESULTS.md).
  devs.controller = { '@_type': 'usb', '@_model': 'none' };
  devs.serial = {
    '@_type': 'file',
    source: { '@_path': def.consoleLog, '@_append': 'on' },
    target: { '@_port': 0 },
  };
  devs.memballoon = { '@_model': 'none' };
  return devs;
}

export function buildDomainXml(def: DomainDefinition): string {
  const x86 = isX86(def.arch);
  const domain: Record<string, unknown> = {
    '@_type': def.virtType,
    name: def.domainName,
    uuid: def.uuid,
    title: def.metadata.name,
    metadata: metadataElement(def.metadata),
    memory: { '@_unit': 'MiB', '#text': def.memoryMiB },
    vcpu: { '@_placement': 'static', '#text': def.vcpus },
  };
  if (x86) {
    domain.sysinfo = {
      '@_type': 'smbios',
      system: {
        entry: [
          { '@_name': 'manufacturer', '#text': 'novalet' },
          { '@_name': 'product', '#text': 'novalet instance' },
          { '@_name': 'serial', '#text': def.uuid },
          { '@_name': 'uuid', '#text': def.uuid },
        ],
      },
    };
  }
  domain.os = osElement(def);
  // ACPI is what lets the guest power off when libvirt presses the power button.
  // Elsewhere (Arm) libvirt ties ACPI to UEFI firmware, which a kernel boot has not.
  if (x86) domain.features = { acpi: '', apic: '' };
  const cpu = cpuElement(def.cpu);
  if (cpu) domain.cpu = cpu;
  domain.on_poweroff = 'destroy';
  domain.on_reboot = 'restart';
  domain.on_crash = 'destroy';
  domain.devices = devices(def);
  return builder.build({ domain }) as string;
}
