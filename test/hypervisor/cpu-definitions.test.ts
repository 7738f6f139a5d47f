import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { CpuDefinitionError, knownX86Features, MAX_CPU_DEFINITIONS, readCpuDefinitions } from '../../hypervisor/cpu/definitions.js';

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
    ['<cpu><arch>x86_64</arch><model>Nehalem</model>', 'CPU_XML_INVALID', 'cpu.xml is not well-formed XML: the <cpu> opened in line 1, col 1 is never closed.'],
    ['<cpu><arch>x86_64</arch></cpu>', 'CPU_XML_NO_MODEL', 'cpu.xml (CPU 1): the <cpu> has no <model>.'],
    ['<cpu><model>Nehalem</model></cpu>', 'CPU_XML_NO_ARCH', 'cpu.xml (CPU 1): the <cpu> (model Nehalem) has no architecture.'],
    ["<cpu><arch>x86_64</arch><model>Nehalem</model><feature name='sse4_2'/></cpu>", 'CPU_XML_UNKNOWN_FEATURE', "cpu.xml (CPU 1): 'sse4_2' is not a CPU feature libvirt knows for x86_64 (its cpu_map). Did you mean 'sse4.2'?"],
    ['<cpu><arch>x86_64</arch><model>Nehalen</model></cpu>', 'CPU_XML_UNKNOWN_MODEL', "cpu.xml (CPU 1): 'Nehalen' is not a CPU model libvirt knows for x86_64 (its cpu_map). Did you mean Nehalem"],
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

describe('documents novalet does not read, said of the operator\'s own document', () => {
  const cpu = "<cpu><arch>x86_64</arch><model>qemu64</model></cpu>";

  it.each([
    ['an external entity', `<?xml version="1.0"?>\n<!DOCTYPE cpu [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n<cpu><arch>x86_64</arch><model>&x;</model></cpu>`, /^cpu\.xml, line 2: has a <!DOCTYPE …> declaration/],
    ['a parameter entity', `<!DOCTYPE cpu [<!ENTITY % p "x">]>${cpu}`, /^cpu\.xml, line 1: has a <!DOCTYPE …> declaration/],
    ['an entity declaration alone', `${cpu}\n<!ENTITY x "y">`, /^cpu\.xml, line 2: has a <!ENTITY …> declaration/],
  ])('%s: refused, one line, before any parsing', (_what, content, message) => {
    const err = refusal(content);
    expect(err.code).toBe('CPU_XML_DOCTYPE');
    expect(err.message).toMatch(message);
    expect(err.message).not.toContain('\n');
  });

  it('an entity XML does not define: named, with its line', () => {
    const err = refusal(`${cpu}\n<cpu><arch>x86_64</arch><model>&foo;</model></cpu>`);
    expect(err.code).toBe('CPU_XML_INVALID');
    expect(err.message).toMatch(/^cpu\.xml, line 2: '&foo;' is not an entity XML defines/);
    // The predefined ones are fine.
    expect(readCpuDefinitions("<cpu><arch>x86_64</arch><model>qemu64</model><vendor>A&amp;B</vendor></cpu>", 'c.xml')[0]).toMatchObject({ model: 'qemu64', vendor: 'A&B' });
  });

  it.each([
    [`${cpu}\n<cpu>\n<model>x</model>\n`, 'the <cpu> opened in line 2, col 1 is never closed'],
    [`${cpu}\n</cpu>`, 'line 2, col 1: </cpu> closes no open tag'],
    [`<cpu>\n<model>x</model>\n</model>`, 'line 3, col 1: </model> where </cpu> (opened in line 1, col 1) is expected'],
    [`${cpu}<!-- unfinished`, 'the document ends inside a tag, comment or CDATA section'],
    [`<?xml version="1.0"\n encoding="UTF-8"?>\n<cpu><model>x</model\n`, 'line 3, col 14:'],
  ])('malformed XML: positions in the file as written, never the wrapper (%s)', (content, words) => {
    const err = refusal(content);
    expect(err.code).toBe('CPU_XML_INVALID');
    expect(err.message).toContain(words);
    expect(err.message).not.toContain('novalet-cpus');
  });

  it('deep nesting is an error of the document, not a crash', () => {
    const err = refusal(`${'<a>'.repeat(20000)}${'</a>'.repeat(20000)}`);
    expect(err.code).toBe('CPU_XML_INVALID');
    expect(err.message).not.toContain('novalet-cpus');
  });

  it(`more than ${MAX_CPU_DEFINITIONS} CPUs, in XML or JSON: refused, one line`, () => {
    expect(readCpuDefinitions(`${cpu}\n`.repeat(MAX_CPU_DEFINITIONS), 'pool.xml')).toHaveLength(MAX_CPU_DEFINITIONS);
    const xml = refusal(`${cpu}\n`.repeat(MAX_CPU_DEFINITIONS + 1));
    expect(xml.code).toBe('CPU_TOO_MANY');
    expect(xml.message).toMatch(/^cpu\.xml holds more than 1000 CPU definitions; novalet compares or baselines at most 1000 at once\./);
    const json = refusal(JSON.stringify(Array.from({ length: MAX_CPU_DEFINITIONS + 1 }, () => ({ arch: 'x86_64', model: 'qemu64' }))));
    expect(json.code).toBe('CPU_TOO_MANY');
  });
});
