import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { hardwareVirtualizationFlag, isX86, parseCpuInfo } from '../../hypervisor/host/cpuinfo.js';
import { fixtureRoot } from './fixture-hosts.js';

function fixtureCpuinfo(host: string): string {
  return readFileSync(path.join(fixtureRoot(host), 'proc/cpuinfo'), 'utf8');
}

const AARCH64 = `processor\t: 0
BogoMIPS\t: 50.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp ssbs
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x3
CPU part\t: 0xd0c
CPU revision\t: 1

processor\t: 1
BogoMIPS\t: 50.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp ssbs
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x3
CPU part\t: 0xd0c
CPU revision\t: 1
`;

describe('parseCpuInfo', () => {
  it('reads a bare-metal Intel host: vendor, model, family/model/stepping, 4 processors, flags with vmx', () => {
    const cpu = parseCpuInfo(fixtureCpuinfo('intel-kvm-nested'));
    expect(cpu).toMatchObject({
      vendor: 'GenuineIntel',
      modelName: 'Intel(R) Xeon(R) E-2224 CPU @ 3.40GHz',
      family: 6,
      model: 158,
      stepping: 10,
      logicalCpus: 4,
    });
    expect(cpu.flags.slice(0, 3)).toEqual(['fpu', 'vme', 'de']);
    expect(cpu.flags).toContain('vmx');
    expect(cpu.flags).not.toContain('hypervisor');
    // `vmx flags` is a line of its own, not the flags.
    expect(cpu.flags).not.toContain('preemption_timer');
    expect(cpu.flags.at(-1)).toBe('arch_capabilities');
    expect(hardwareVirtualizationFlag(cpu)).toBe('vmx');
  });

  it('reads a bare-metal AMD host with svm', () => {
    const cpu = parseCpuInfo(fixtureCpuinfo('amd-kvm-nested'));
    expect(cpu).toMatchObject({ vendor: 'AuthenticAMD', family: 23, model: 24, stepping: 1, logicalCpus: 4 });
    expect(cpu.modelName).toBe('AMD Ryzen 3 3200G with Radeon Vega Graphics');
    expect(hardwareVirtualizationFlag(cpu)).toBe('svm');
  });

  it('reads the VMware guest of the field report: hypervisor flag, neither vmx nor svm', () => {
    const cpu = parseCpuInfo(fixtureCpuinfo('vmware-no-vmx'));
    expect(cpu.logicalCpus).toBe(2);
    expect(cpu.flags).toContain('hypervisor');
    expect(hardwareVirtualizationFlag(cpu)).toBeNull();
  });

  it('takes the first processor\'s flags when processors differ', () => {
    const text = 'processor\t: 0\nflags\t\t: fpu vmx\n\nprocessor\t: 1\nflags\t\t: fpu svm sse\n';
    const cpu = parseCpuInfo(text);
    expect(cpu.flags).toEqual(['fpu', 'vmx']);
    expect(cpu.logicalCpus).toBe(2);
  });

  it('gives null for missing fields and no flags for empty text', () => {
    expect(parseCpuInfo('')).toEqual({
      vendor: null,
      modelName: null,
      family: null,
      model: null,
      stepping: null,
      logicalCpus: 0,
      flags: [],
    });
    const partial = parseCpuInfo('processor\t: 0\nvendor_id\t: GenuineIntel\nmodel\t\t: \ncpu family\t: six\n');
    expect(partial).toMatchObject({ vendor: 'GenuineIntel', family: null, model: null, stepping: null, modelName: null, logicalCpus: 1, flags: [] });
  });

  it('reads aarch64 cpuinfo: Features as flags, CPU implementer as vendor, part and revision', () => {
    const cpu = parseCpuInfo(AARCH64);
    expect(cpu).toMatchObject({ vendor: 'ARM', family: 8, model: 0xd0c, stepping: 1, logicalCpus: 2, modelName: null });
    expect(cpu.flags).toContain('asimd');
    expect(hardwareVirtualizationFlag(cpu)).toBeNull();
  });

  it('keeps an unknown ARM implementer code as it is', () => {
    expect(parseCpuInfo('processor\t: 0\nCPU implementer\t: 0x99\n').vendor).toBe('0x99');
    expect(parseCpuInfo('processor\t: 0\nCPU implementer\t: 0xc0\n').vendor).toBe('Ampere');
  });
});

describe('isX86', () => {
  it('knows which architectures show vmx/svm', () => {
    expect(['x86_64', 'i686', 'amd64'].map(isX86)).toEqual([true, true, true]);
    expect(['aarch64', 'ppc64le', 's390x', 'riscv64'].map(isX86)).toEqual([false, false, false, false]);
  });
});
