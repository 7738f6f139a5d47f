import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { CpuDefinitionError, knownX86Features, readCpuDefinitions } from '../../hypervisor/cpu/definitions.js';

const FIXTURES = path.resolve(import.meta.dirname, '../fixtures/cpus');
const fixture = (name: string) => readFileSync(path.join(FIXTURES, name), 'utf8');

function refusal(content: string): CpuDefinitionError {
  try {
    readCpuDefinitions(content, 'cpu.xml');
  } catch (err) {
    expect(err).toBeInstanceOf(CpuDefinitionError);
    return err as CpuDefinitionError;
  }
  throw new Error('accepted');
}

describe('reading <cpu> definitions', () => {
  it('takes the host CPU from capabilities', () => {
    const [cpu, ...rest] = readCpuDefinitions(fixture('server-westmere-capabilities.xml'), 'server.xml');
    expect(rest).toEqual([]);
    expect(cpu).toMatchObject({ source: 'server.xml (CPU 1)', arch: 'x86_64', model: 'Westmere', vendor: 'Intel' });
    expect(cpu?.features.map((f) => f.name)).toContain('vmx');
    expect(cpu?.xml).toContain('<arch>x86_64</arch>');
    expect(cpu?.xml).toContain('<model>Westmere</model>');
    expect(cpu?.xml).toContain('<feature name="vmx"/>');
  });

  it('takes a domain\'s <cpu> with the architecture from os/type, keeping policies', () => {
    const [cpu] = readCpuDefinitions(fixture('guest-nehalem-domain.xml'), 'guest.xml');
    expect(cpu).toMatchObject({ arch: 'x86_64', model: 'Nehalem' });
    expect(cpu?.features).toEqual([
      { name: 'pcid', policy: 'require' },
      { name: 'sse4.2', policy: 'disable' },
    ]);
    expect(cpu?.xml).toMatch(/<cpu mode="custom" match="exact" check="partial">/);
    // libvirt refuses <arch> inside a guest CPU; it comes from the domain.
    expect(cpu?.xml).not.toContain('<arch>');
  });

  it('turns domain capabilities\' host-model into a custom CPU', () => {
    const [cpu] = readCpuDefinitions(fixture('tcg-domain-capabilities.xml'), 'domcaps.xml');
    expect(cpu).toMatchObject({ arch: 'x86_64', model: 'EPYC', vendor: 'AMD' });
    expect(cpu?.xml).toMatch(/<cpu mode="custom" match="exact">/);
    expect(cpu?.xml).toContain('<feature policy="disable" name="vme"/>');
  });

  it('reads several documents pasted into one file, as virsh does', () => {
    const both = `${fixture('server-westmere-capabilities.xml')}\n${fixture('guest-nehalem-domain.xml')}`;
    expect(readCpuDefinitions(both, 'both.xml').map((c) => c.model)).toEqual(['Westmere', 'Nehalem']);
  });

  it('knows libvirt\'s x86 feature names', () => {
    const known = knownX86Features();
    expect(known.has('sse4.2')).toBe(true);
    expect(known.has('vmx')).toBe(true);
    expect(known.has('sse4_2')).toBe(false);
  });

  it.each([
    ['<cpu><arch>x86_64</arch><model>Nehalem</model>', 'CPU_XML_INVALID', 'cpu.xml is not valid XML'],
    ['<cpu><arch>x86_64</arch></cpu>', 'CPU_XML_NO_MODEL', 'cpu.xml (CPU 1): the <cpu> has no <model>.'],
    ['<cpu><model>Nehalem</model></cpu>', 'CPU_XML_NO_ARCH', 'cpu.xml (CPU 1): the <cpu> (model Nehalem) has no architecture.'],
    ["<cpu><arch>x86_64</arch><model>Nehalem</model><feature name='sse4_2'/></cpu>", 'CPU_XML_UNKNOWN_FEATURE', "cpu.xml (CPU 1): 'sse4_2' is not a CPU feature libvirt knows for x86_64."],
    ['<network><name>default</name></network>', 'CPU_XML_NO_CPU', 'cpu.xml holds no CPU definition.'],
  ])('refuses %s with one line naming it', (content, code, words) => {
    const err = refusal(content);
    expect(err.code).toBe(code);
    expect(err.message).toContain(words);
    expect(err.message).not.toContain('\n');
  });
});

describe("CPUs from nova's cpu_info and novalet's capability reports (JSON)", () => {
  const skylake = fixture('nova-cpu-info-skylake.json');

  it("takes nova's cpu_info as a host CPU", () => {
    const [cpu, ...rest] = readCpuDefinitions(skylake, 'hv.json');
    expect(rest).toEqual([]);
    expect(cpu).toMatchObject({ source: 'hv.json (CPU 1)', arch: 'x86_64', model: 'Skylake-Client-IBRS', vendor: 'Intel' });
    expect(cpu?.features).toContainEqual({ name: 'vmx', policy: null });
    expect(cpu?.xml).toContain('<arch>x86_64</arch>');
    expect(cpu?.xml).toContain('<feature name="md-clear"/>');
  });

  it('takes the cpu_info of a capability report, also as the JSON string nova stores, and lists of them', () => {
    const info = JSON.parse(skylake) as Record<string, unknown>;
    const reports = JSON.stringify([{ cpu_info: info, virt_types: {} }, { cpu_info: JSON.stringify({ ...info, model: 'Westmere' }) }]);
    expect(readCpuDefinitions(reports, 'pool.json').map((c) => [c.source, c.model])).toEqual([
      ['pool.json (CPU 1)', 'Skylake-Client-IBRS'],
      ['pool.json (CPU 2)', 'Westmere'],
    ]);
  });

  it('bad JSON: one line naming the file and what is allowed', () => {
    const cases: Array<[string, string, RegExp]> = [
      ['{"arch": ', 'CPU_JSON_INVALID', /^cpu\.xml is not valid JSON: .*Give nova's cpu_info/],
      ['{"hosts": 3}', 'CPU_XML_NO_ARCH', /^cpu\.xml \(CPU 1\): cpu_info has no arch\./],
      ['[1]', 'CPU_JSON_NO_CPU', /^cpu\.xml \(CPU 1\) is JSON but not a CPU/],
      ['{"arch": "x86_64", "model": "Westmere", "features": "vmx"}', 'CPU_JSON_BAD_FEATURES', /features must be a list of feature names/],
      ['{"arch": "x86_64", "model": "Westmere", "features": ["warp"]}', 'CPU_XML_UNKNOWN_FEATURE', /'warp' is not a CPU feature libvirt knows for x86_64/],
      ['[]', 'CPU_XML_NO_CPU', /holds no CPU definition/],
    ];
    for (const [content, code, message] of cases) {
      const err = refusal(content);
      expect(err.code, content).toBe(code);
      expect(err.message, content).toMatch(message);
      expect(err.message.split('\n')).toHaveLength(1);
    }
  });
});
