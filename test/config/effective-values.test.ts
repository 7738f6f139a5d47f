import { describe, expect, it } from 'vitest';
import { effectiveCpuMode } from '../../config/cpu-compatibility-rules.js';
import {
  configuredMachineType,
  DEFAULT_TRANSPORT_URL,
  effectiveAllocationRatios,
  effectiveConnectionUri,
  effectiveTransportUrl,
  usesEmbeddedLibvirt,
} from '../../config/effective-values.js';
import { parseConfigText } from '../../config/load-config.js';

const values = (text: string) => parseConfigText(text, '/x.conf').values;

describe('what unset options mean', () => {
  it("connection_uri: the embedded QEMU driver below state_path, unless set", () => {
    expect(effectiveConnectionUri(values(''))).toBe('qemu:///embed?root=/var/lib/novalet/libvirt');
    expect(effectiveConnectionUri(values('[DEFAULT]\nstate_path = /srv/n\n'))).toBe('qemu:///embed?root=/srv/n/libvirt');
    expect(usesEmbeddedLibvirt(values(''))).toBe(true);
    const system = values('[libvirt]\nconnection_uri = qemu:///system\n');
    expect(effectiveConnectionUri(system)).toBe('qemu:///system');
    expect(usesEmbeddedLibvirt(system)).toBe(false);
  });

  it("transport_url: oslo.messaging's default when unset or empty", () => {
    expect(effectiveTransportUrl(values(''))).toBe(DEFAULT_TRANSPORT_URL);
    expect(DEFAULT_TRANSPORT_URL).toBe('rabbit://guest:guest@localhost:5672/');
    expect(effectiveTransportUrl(values('[DEFAULT]\ntransport_url =\n'))).toBe(DEFAULT_TRANSPORT_URL);
    expect(effectiveTransportUrl(values('[DEFAULT]\ntransport_url = rabbit://n:p@r:5672/\n'))).toBe('rabbit://n:p@r:5672/');
  });

  it('allocation ratios: the initial_* ones when unset or 0.0, as nova', () => {
    expect(effectiveAllocationRatios(values(''))).toEqual({ cpu: 4, ram: 1, disk: 1 });
    expect(
      effectiveAllocationRatios(values('[DEFAULT]\ncpu_allocation_ratio = 16.0\nram_allocation_ratio = 0.0\ninitial_ram_allocation_ratio = 1.5\n')),
    ).toEqual({ cpu: 16, ram: 1.5, disk: 1 });
  });

  it("cpu_mode: nova's default, host-model for kvm and qemu", () => {
    expect(effectiveCpuMode(values(''))).toBe('host-model');
    expect(effectiveCpuMode(values('[libvirt]\nvirt_type = qemu\n').libvirt)).toBe('host-model');
    expect(effectiveCpuMode({ virt_type: 'lxc', cpu_mode: null })).toBe('none');
    expect(effectiveCpuMode(values('[libvirt]\ncpu_mode = host-passthrough\n'))).toBe('host-passthrough');
  });
});

describe('[libvirt] hw_machine_type', () => {
  it('gives the machine type of the architecture asked for, as nova reads arch=machine entries', () => {
    const entries = values('[libvirt]\nhw_machine_type = x86_64 = pc-q35-7.2, aarch64=virt\n').libvirt.hw_machine_type;
    expect(configuredMachineType(entries, 'x86_64')).toBe('pc-q35-7.2');
    expect(configuredMachineType(entries, 'aarch64')).toBe('virt');
    expect(configuredMachineType(entries, 'armv7l')).toBeNull();
    expect(configuredMachineType(null, 'x86_64')).toBeNull();
    expect(configuredMachineType(['x86_64=', '=pc'], 'x86_64')).toBeNull();
  });
});
