import { XMLParser } from 'fast-xml-parser';
import { describe, expect, it } from 'vitest';
import { buildDomainXml, domainNameFor, type DomainDefinition } from '../../hypervisor/instance/domain-xml.js';
import { guestCpu } from '../../hypervisor/cpu/guest.js';
import { NOVALET_METADATA_URI } from '../../hypervisor/instance/metadata.js';
import type { LibvirtSection } from '../../config/novalet-config.js';
import { parseConfigText } from '../../config/load-config.js';

const UUID = '6f1c2a3e-0b4d-4c5e-8f9a-0123456789ab';

function definition(overrides: Partial<DomainDefinition> = {}): DomainDefinition {
  return {
    uuid: UUID,
    domainName: domainNameFor(UUID),
    virtType: 'qemu',
    arch: 'x86_64',
    machine: null,
    emulator: '/usr/bin/qemu-system-x86_64',
    vcpus: 2,
    memoryMiB: 256,
    disk: null,
    kernel: '/var/lib/novalet/instances/x/kernel',
    initrd: '/var/lib/novalet/instances/x/ramdisk',
    cmdline: 'console=ttyS0 novalet.name=t1',
    consoleLog: '/var/lib/novalet/instances/x/console.log',
    cpu: null,
    metadata: {
      name: 'web-1',
      createdAt: '2026-11-24T23:00:00.000Z',
      vcpus: 2,
      memoryMiB: 256,
      image: null,
      virtType: 'qemu',
      virtTypeReason: 'KVM is not usable on this host.',
    },
    ...overrides,
  };
}

const parser = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '@_', parseTagValue: false });

function parse(xml: string): any {
  return parser.parse(xml).domain;
}

const LIBVIRT: LibvirtSection = { ...parseConfigText('', 'defaults.conf').values.libvirt, virt_type: 'qemu' };

describe('domain XML', () => {
  it('describes a direct kernel boot with a serial console log file', () => {
    const d = parse(buildDomainXml(definition()));
    expect(d['@_type']).toBe('qemu');
    expect(d.name).toBe(`novalet-${UUID}`);
    expect(d.uuid).toBe(UUID);
    expect(d.memory).toEqual({ '@_unit': 'MiB', '#text': '256' });
    expect(d.vcpu['#text']).toBe('2');
    expect(d.os.kernel).toBe('/var/lib/novalet/instances/x/kernel');
    expect(d.os.initrd).toBe('/var/lib/novalet/instances/x/ramdisk');
    expect(d.os.cmdline).toBe('console=ttyS0 novalet.name=t1');
    expect(d.os.type).toEqual({ '@_arch': 'x86_64', '#text': 'hvm' });
    expect(d.devices.emulator).toBe('/usr/bin/qemu-system-x86_64');
    expect(d.devices.serial['@_type']).toBe('file');
    expect(d.devices.serial.source['@_path']).toBe('/var/lib/novalet/instances/x/console.log');
    expect(d.devices.disk).toBeUndefined();
    expect(d.features).toHaveProperty('acpi');
    expect(d.sysinfo.system.entry).toContainEqual({ '@_name': 'serial', '#text': UUID });
  });

  it('boots a qcow2 overlay from disk when there is no kernel', () => {
    const d = parse(buildDomainXml(definition({ kernel: null, initrd: null, cmdline: null, disk: { path: '/i/disk', format: 'qcow2' }, machine: 'pc' })));
    expect(d.os.kernel).toBeUndefined();
    expect(d.os.boot['@_dev']).toBe('hd');
    expect(d.os.type['@_machine']).toBe('pc');
    expect(d.devices.disk.driver['@_type']).toBe('qcow2');
    expect(d.devices.disk.source['@_file']).toBe('/i/disk');
    expect(d.devices.disk.target).toEqual({ '@_dev': 'vda', '@_bus': 'virtio' });
  });

  it('turns off the USB controller libvirt would add by default, on every architecture', () => {
    // Without <controller type='usb' model='none'/> libvirt gives a pc guest a piix3-uhci controller.
    for (const arch of ['x86_64', 'aarch64']) {
      const d = parse(buildDomainXml(definition({ arch, machine: arch === 'aarch64' ? 'virt' : null })));
      expect(d.devices.controller).toEqual({ '@_type': 'usb', '@_model': 'none' });
    }
  });

  it('keeps novalet\'s instance data in its own metadata namespace', () => {
    const d = parse(buildDomainXml(definition()));
    const meta = d.metadata['novalet:instance'];
    expect(meta['@_xmlns:novalet']).toBe(NOVALET_METADATA_URI);
    expect(meta['novalet:name']).toBe('web-1');
    expect(meta['novalet:virtType']).toEqual({ '@_reason': 'KVM is not usable on this host.', '#text': 'qemu' });
    expect(meta['novalet:flavor']).toEqual({ '@_vcpus': '2', '@_memory': '256' });
  });

  it('cannot be injected into through the name, metadata or command line', () => {
    const evil = `x</title><devices><disk/></devices><title>"'&]]><!--`;
    const xml = buildDomainXml(
      definition({
        cmdline: `console=ttyS0 ${evil}`,
        metadata: { ...definition().metadata, name: evil, virtTypeReason: evil, image: evil },
      }),
    );
    const d = parse(xml);
    expect(d.title).toBe(evil);
    expect(d.metadata['novalet:instance']['novalet:name']).toBe(evil);
    expect(d.metadata['novalet:instance']['novalet:image']).toBe(evil);
    expect(d.metadata['novalet:instance']['novalet:virtType']['@_reason']).toBe(evil);
    expect(d.os.cmdline).toBe(`console=ttyS0 ${evil}`);
    // Exactly one <devices> and no stray disk: nothing was interpreted as markup.
    expect(xml.match(/<devices>/g)).toHaveLength(1);
    expect(d.devices.disk).toBeUndefined();
    expect(xml).not.toContain('<!--');
  });

  it('turns the CPU options into libvirt\'s <cpu> element', () => {
    const custom = guestCpu({ ...LIBVIRT, cpu_mode: 'custom', cpu_models: ['Nehalem', 'qemu64'], cpu_model_extra_flags: ['+pcid', '-sse4.2', 'AES'] });
    const d = parse(buildDomainXml(definition({ cpu: custom })));
    expect(d.cpu['@_mode']).toBe('custom');
    expect(d.cpu['@_match']).toBe('exact');
    expect(d.cpu.model).toEqual({ '@_fallback': 'forbid', '#text': 'Nehalem' });
    expect(d.cpu.feature).toEqual([
      { '@_policy': 'require', '@_name': 'pcid' },
      { '@_policy': 'disable', '@_name': 'sse4.2' },
      { '@_policy': 'require', '@_name': 'aes' },
    ]);
    const hostModel = parse(buildDomainXml(definition({ cpu: guestCpu(LIBVIRT) })));
    expect(hostModel.cpu['@_mode']).toBe('host-model');
    expect(parse(buildDomainXml(definition({ cpu: guestCpu({ ...LIBVIRT, cpu_mode: 'none' }) }))).cpu).toBeUndefined();
  });
});
