/**
 * novalet cpu-compare and cpu-baseline against the real libvirt, checked
 * against virsh hypervisor-cpu-compare / hypervisor-cpu-baseline on the same
 * files (virsh on an embedded root of its own: one process per root). By
 * default the commands compare with the virt type instances get on this host
 * (KVM where it is usable), and so does virsh here; most cases ask for TCG
 * with --virt-type qemu, which every host has.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EMBEDDED_QEMU_CONF } from '../../hypervisor/libvirt/embedded-root.js';
import { runNovalet, TOP } from '../support/run-novalet.js';
import { virtTypeHere } from '../support/this-host.js';

const CPUS = path.join(TOP, 'test/fixtures/cpus');
const VIRSH_ROOT = '/var/tmp/novalet-test-virsh';
const state = mkdtempSync(path.join(tmpdir(), 'novalet-cpu-'));
const conf = path.join(state, 'novalet.conf');

function virsh(...args: string[]): string {
  try {
    return execFileSync('virsh', ['-c', `qemu:///embed?root=${VIRSH_ROOT}`, ...args], { encoding: 'utf8', env: { ...process.env, LIBVIRT_LOG_OUTPUTS: '1:file:/dev/null' } });
  } catch (err) {
    return String((err as { stdout?: string }).stdout ?? '');
  }
}

function virshVerdict(file: string, virtType = 'qemu'): string {
  const out = virsh('hypervisor-cpu-compare', file, '--virttype', virtType, '--arch', 'x86_64');
  // virsh: "CPU described in F is identical to|incompatible with the CPU provided by hypervisor …",
  // or "The CPU provided by hypervisor on the host is a superset of CPU described in F".
  if (/is identical to the CPU provided/.test(out)) return 'identical';
  if (/is incompatible with the CPU provided/.test(out)) return 'incompatible';
  if (/is a superset of CPU described/.test(out)) return 'superset';
  return `virsh said: ${out}`;
}

const model = (xml: string) => /<model[^>]*>([^<]+)<\/model>/.exec(xml)?.[1];

beforeAll(() => {
  mkdirSync(path.join(VIRSH_ROOT, 'etc'), { recursive: true });
  writeFileSync(path.join(VIRSH_ROOT, 'etc/qemu.conf'), EMBEDDED_QEMU_CONF);
  writeFileSync(conf, `[DEFAULT]\nstate_path = ${state}\n`);
});

afterAll(() => rmSync(state, { recursive: true, force: true }));

/** Why virsh says the CPU in `file` is incompatible under TCG here (from --error), or null when it is not. */
function virshIncompatibility(file: string): string | null {
  try {
    execFileSync('virsh', ['-c', `qemu:///embed?root=${VIRSH_ROOT}`, 'hypervisor-cpu-compare', file, '--virttype', 'qemu', '--arch', 'x86_64', '--error'], { encoding: 'utf8', stdio: 'pipe', env: { ...process.env, LIBVIRT_LOG_OUTPUTS: '1:file:/dev/null' } });
    return null;
  } catch (err) {
    const said = String((err as { stderr?: string }).stderr ?? '');
    return /the CPU is incompatible with host CPU:\s*([^\n]+)/.exec(said)?.[1]?.trim() ?? `virsh said: ${said}`;
  }
}

describe('novalet cpu-compare', () => {
  it('by default, compares with the virt type instances get here, as virsh does for it', async () => {
    const effective = (await virtTypeHere(conf)).effective ?? 'qemu';
    for (const name of ['server-westmere-capabilities.xml', 'laptop-pentium3-vmx-capabilities.xml']) {
      const file = path.join(CPUS, name);
      const run = await runNovalet(['cpu-compare', '--json', '--config-file', conf, file]);
      const report = JSON.parse(run.stdout) as { result: string; target: { virttype: string } };
      expect(report.target.virttype).toBe(effective);
      expect(report.result).toBe(virshVerdict(file, effective));
    }
  });

  it.each([
    'server-westmere-capabilities.xml',
    'guest-nehalem-domain.xml',
    'tcg-domain-capabilities.xml',
    'laptop-pentium3-vmx-capabilities.xml',
    'server-amd-phenom-capabilities.xml',
  ])(
    '%s: the same answer as virsh hypervisor-cpu-compare, with the missing features named',
    async (name) => {
      const file = path.join(CPUS, name);
      const run = await runNovalet(['cpu-compare', '--json', '--virt-type', 'qemu', '--config-file', conf, file]);
      const report = JSON.parse(run.stdout) as { result: string; missing: string | null; target: { virttype: string } };
      expect(report.target.virttype).toBe('qemu');
      expect(report.result).toBe(virshVerdict(file));
      expect(run.status).toBe(report.result === 'incompatible' ? 1 : 0);
      if (report.result === 'incompatible') expect(report.missing?.length).toBeGreaterThan(0);
    },
  );

  it('says why a CPU is incompatible here, in the words virsh has for it', async () => {
    for (const name of ['server-westmere-capabilities.xml', 'guest-nehalem-domain.xml']) {
      const file = path.join(CPUS, name);
      const why = virshIncompatibility(file);
      const run = await runNovalet(['cpu-compare', '--virt-type', 'qemu', '--config-file', conf, file]);
      if (why === null) {
        expect(run.status).toBe(0);
        continue;
      }
      expect(run.status).toBe(1);
      expect(run.stdout).toMatch(/\) is incompatible with the CPU this host provides for virt type qemu \(TCG\)/);
      expect(run.stdout).toContain(why);
    }
  });

  it('a CPU TCG can give: exit 0, as virsh', async () => {
    const file = path.join(state, 'qemu64.xml');
    writeFileSync(file, "<cpu><arch>x86_64</arch><model>qemu64</model></cpu>");
    const run = await runNovalet(['cpu-compare', '--json', '--virt-type', 'qemu', '--config-file', conf, file]);
    expect(run.status).toBe(0);
    expect((JSON.parse(run.stdout) as { result: string }).result).toBe(virshVerdict(file));
    const text = await runNovalet(['cpu-compare', '--virt-type', 'qemu', '--config-file', conf, file]);
    expect(text.stdout).toMatch(/^The CPU this host provides for virt type qemu \(TCG\) with qemu-system-x86_64 is a superset of the CPU described in .*qemu64\.xml \(qemu64\)\.$/m);
  });

  it('bad input: one line naming it, exit 2', async () => {
    const file = path.join(state, 'broken.xml');
    writeFileSync(file, '<cpu><model>Nehalem</model>');
    const run = await runNovalet(['cpu-compare', '--config-file', conf, file]);
    expect(run.status).toBe(2);
    expect(run.stderr.trim().split('\n')).toHaveLength(1);
    expect(run.stderr).toContain(`${file} is not well-formed XML`);
  });

  /** One line on stderr starting `novalet: `, exit 2; a process that never exits fails by the test's timeout. */
  async function refused(args: string[]): Promise<string> {
    const run = await runNovalet([...args, '--config-file', conf]);
    expect(run.status, run.stderr).toBe(2);
    const lines = run.stderr.trim().split('\n');
    expect(lines, run.stderr).toHaveLength(1);
    expect(lines[0]).toMatch(/^novalet: /);
    expect(run.stderr).not.toMatch(/internal error|\n\s+at /);
    return lines[0] as string;
  }

  it('a DOCTYPE with an external or a parameter entity: refused in one line, never read', async () => {
    const xxe = path.join(state, 'xxe.xml');
    writeFileSync(xxe, '<!DOCTYPE cpu [<!ENTITY x SYSTEM "file:///etc/passwd">]><cpu><arch>x86_64</arch><model>&x;</model></cpu>');
    expect(await refused(['cpu-compare', xxe])).toContain(`${xxe}, line 1: has a <!DOCTYPE …> declaration`);
    const pe = path.join(state, 'pe.xml');
    writeFileSync(pe, '<!DOCTYPE cpu [<!ENTITY % p "x">]><cpu><arch>x86_64</arch><model>qemu64</model></cpu>');
    expect(await refused(['cpu-baseline', pe])).toContain('has a <!DOCTYPE …> declaration');
  });

  it('20 MB of pasted <cpu> documents: refused by size, read no further', async () => {
    const big = path.join(state, 'big.xml');
    writeFileSync(big, '<cpu><arch>x86_64</arch><model>qemu64</model></cpu>\n'.repeat(400_000));
    expect(await refused(['cpu-compare', big])).toContain(`The CPU file ${big} is larger than 1 MiB`);
    const many = path.join(state, 'many.xml');
    writeFileSync(many, '<cpu><arch>x86_64</arch><model>qemu64</model></cpu>\n'.repeat(1001));
    expect(await refused(['cpu-baseline', many])).toContain('holds more than 1000 CPU definitions');
  });

  it('a directory, a device, an empty path: one line naming the FILE', async () => {
    expect(await refused(['cpu-compare', state])).toContain(`The CPU file ${state} is a directory.`);
    expect(await refused(['cpu-baseline', '/dev/null'])).toContain('The CPU file /dev/null is not a regular file');
    const empty = await refused(['cpu-compare', '']);
    expect(empty).toBe('novalet: The CPU FILE is an empty path. Give the path of an XML or JSON file.');
    expect(await refused(['cpu-compare', path.join(state, 'absent.json')])).toContain('Give the path of an XML or JSON file.');
  });

  it("control characters in a file's names are escaped: no line of the file's making reaches the terminal", async () => {
    const sneaky = path.join(state, 'sneaky.xml');
    writeFileSync(sneaky, '<cpu><arch>x86_64</arch><model>qemu64</model><feature name="sse4.2\nnovalet: everything is fine\u001b[2J"/></cpu>');
    const line = await refused(['cpu-compare', sneaky]);
    expect(line).toContain("'sse4.2\\nnovalet: everything is fine\\x1b[2J' is not a CPU feature libvirt knows");
    expect(line).not.toContain('\u001b');
  });

  it("a model libvirt does not know: named with the file, and no domain's log to read", async () => {
    const file = path.join(state, 'unknown-model.xml');
    writeFileSync(file, '<cpu><arch>x86_64</arch><model>Skylake-Clientt</model></cpu>');
    const line = await refused(['cpu-compare', '--virt-type', 'qemu', file]);
    expect(line).toContain(`${file} (CPU 1): 'Skylake-Clientt' is not a CPU model libvirt knows for x86_64 (its cpu_map). Did you mean Skylake-Client`);
    expect(line).not.toContain("domain's log");
  });
});

describe("the libvirt article's pool: a laptop with vmx and an AMD server", () => {
  const laptop = path.join(CPUS, 'laptop-pentium3-vmx-capabilities.xml');
  const server = path.join(CPUS, 'server-amd-phenom-capabilities.xml');
  const features = (xml: string) => [...xml.matchAll(/<feature policy='require' name='([^']+)'\/>/g)].map((m) => m[1]).sort();

  it('compare: the laptop is incompatible here, for want of vmx among others, as virsh says', async () => {
    const run = await runNovalet(['cpu-compare', '--json', '--virt-type', 'qemu', '--config-file', conf, laptop]);
    expect(run.status).toBe(1);
    const report = JSON.parse(run.stdout) as { result: string; missing: string; arch: string; target: { arch: string } };
    expect(report.result).toBe('incompatible');
    expect(report.result).toBe(virshVerdict(laptop));
    expect(report.arch).toBe('i686');
    expect(report.target.arch).toBe('x86_64');
    expect(report.missing.split(/,\s*/)).toContain('vmx');
  });

  it("baseline: one CPU both can provide, without the laptop's vmx or the server's AMD-only features; virsh's answer", async () => {
    const run = await runNovalet(['cpu-baseline', '--virt-type', 'qemu', '--config-file', conf, laptop, server]);
    expect(run.status).toBe(0);
    const both = path.join(state, 'article-both.xml');
    writeFileSync(both, [laptop, server].map((f) => execFileSync('cat', [f], { encoding: 'utf8' })).join('\n'));
    const theirs = virsh('hypervisor-cpu-baseline', both, '--virttype', 'qemu');
    expect(model(run.stdout)).toBe(model(theirs));
    expect(features(run.stdout)).toEqual(features(theirs));
    const ours = features(run.stdout);
    // What both have stays; what only one has is masked.
    for (const common of ['lahf_lm', 'cx16', 'ht']) expect(ours).toContain(common);
    for (const onlyOne of ['vmx', 'ssse3', 'est', 'tm2', 'sse4a', 'abm', '3dnowprefetch', 'misalignsse', 'rdtscp', 'pdpe1gb', 'popcnt']) expect(ours).not.toContain(onlyOne);

    const expanded = await runNovalet(['cpu-baseline', '--features', '--virt-type', 'qemu', '--config-file', conf, laptop, server]);
    const all = features(expanded.stdout);
    for (const common of ['lahf_lm', 'cx16', 'sse2', 'apic', 'clflush']) expect(all).toContain(common);
    expect(all).not.toContain('vmx');
    expect(all).not.toContain('sse4a');
  });

  it('CPUs of unrelated architectures: one line naming them, exit 2', async () => {
    const arm = path.join(state, 'arm.xml');
    writeFileSync(arm, '<cpu><arch>aarch64</arch><model>cortex-a57</model></cpu>');
    const run = await runNovalet(['cpu-baseline', '--config-file', conf, laptop, arm]);
    expect(run.status).toBe(2);
    expect(run.stderr.trim().split('\n')).toHaveLength(1);
    expect(run.stderr).toContain('different architectures (i686, aarch64)');
  });
});

describe("CPUs from capability reports and nova's cpu_info (JSON)", () => {
  const laptop = path.join(CPUS, 'laptop-pentium3-vmx-capabilities.xml');
  const features = (xml: string) => [...xml.matchAll(/name='([^']+)'/g)].map((m) => m[1]).sort();

  it("baseline of this host's own `novalet capabilities --json` report and the article's laptop: virsh's answer for the same CPUs as XML", async () => {
    const report = await runNovalet(['capabilities', '--json', '--config-file', conf]);
    const reportFile = path.join(state, 'this-host.json');
    writeFileSync(reportFile, report.stdout);
    const run = await runNovalet(['cpu-baseline', '--virt-type', 'qemu', '--config-file', conf, reportFile, laptop]);
    expect(run.status).toBe(0);
    // The same two CPUs as virsh reads them: this host's capabilities and the laptop's.
    const both = path.join(state, 'host-and-laptop.xml');
    writeFileSync(both, `${virsh('capabilities')}\n${execFileSync('cat', [laptop], { encoding: 'utf8' })}`);
    const theirs = virsh('hypervisor-cpu-baseline', both, '--virttype', 'qemu');
    expect(model(theirs)).toBeTruthy();
    expect(model(run.stdout)).toBe(model(theirs));
    expect(features(run.stdout)).toEqual(features(theirs));
  });

  it("nova's cpu_info of an Intel and an AMD host: libvirt will not baseline them; one line saying whose CPU is whose, exit 2", async () => {
    const intel = path.join(CPUS, 'nova-cpu-info-skylake.json');
    const amd = path.join(CPUS, 'nova-cpu-info-epyc.json');
    const run = await runNovalet(['cpu-baseline', '--config-file', conf, intel, amd]);
    expect(run.status).toBe(2);
    // libvirt's own log (LIBVIRT_LOG_OUTPUTS=4:stderr in tests) aside, one line.
    expect(run.stderr.split('\n').filter((l) => l.startsWith('novalet:'))).toHaveLength(1);
    expect(run.stderr).toContain(`different vendors (Intel: ${intel} (CPU 1); AMD: ${amd} (CPU 1))`);
    // The AMD one alone with the laptop (no vendor) is fine.
    const ok = await runNovalet(['cpu-baseline', '--virt-type', 'qemu', '--config-file', conf, amd, laptop]);
    expect(ok.status).toBe(0);
    expect(model(ok.stdout)).toBeTruthy();
  });

  it('compare takes a nova cpu_info: as virsh says for the same CPU as XML', async () => {
    const novaFile = path.join(CPUS, 'nova-cpu-info-skylake.json');
    const run = await runNovalet(['cpu-compare', '--json', '--virt-type', 'qemu', '--config-file', conf, novaFile]);
    const report = JSON.parse(run.stdout) as { result: string; model: string };
    expect(report.model).toBe('Skylake-Client-IBRS');
    const info = JSON.parse(execFileSync('cat', [novaFile], { encoding: 'utf8' })) as { arch: string; model: string; vendor: string; features: string[] };
    const xmlFile = path.join(state, 'skylake.xml');
    writeFileSync(xmlFile, `<cpu><arch>${info.arch}</arch><model>${info.model}</model><vendor>${info.vendor}</vendor>${info.features.map((f) => `<feature name='${f}'/>`).join('')}</cpu>`);
    expect(report.result).toBe(virshVerdict(xmlFile));
    expect(report.result).toBe('incompatible');
  });
});

describe('novalet cpu-baseline', () => {
  it('gives the model virsh hypervisor-cpu-baseline gives for the same CPUs, and expands features on request', async () => {
    const files = ['server-westmere-capabilities.xml', 'guest-nehalem-domain.xml'].map((n) => path.join(CPUS, n));
    const run = await runNovalet(['cpu-baseline', '--virt-type', 'qemu', '--config-file', conf, ...files]);
    expect(run.status).toBe(0);
    expect(run.stdout).toMatch(/^<cpu mode='custom' match='exact'>/);
    const both = path.join(state, 'both.xml');
    writeFileSync(both, files.map((f) => execFileSync('cat', [f], { encoding: 'utf8' })).join('\n'));
    const theirs = virsh('hypervisor-cpu-baseline', both, '--virttype', 'qemu', '--arch', 'x86_64');
    expect(model(run.stdout)).toBe(model(theirs));
    const expanded = await runNovalet(['cpu-baseline', '--features', '--migratable', '--virt-type', 'qemu', '--config-file', conf, ...files]);
    expect(expanded.status).toBe(0);
    expect((expanded.stdout.match(/<feature /g) ?? []).length).toBeGreaterThan((run.stdout.match(/<feature /g) ?? []).length);
  });
});

describe('cpu-baseline --migratable and --virt-type, as the README and --help say', () => {
  it('--help documents --virt-type and what --migratable leaves in', async () => {
    const help = await runNovalet(['cpu-baseline', '--help']);
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/^usage: novalet cpu-baseline FILE\.\.\. \[--features\] \[--migratable\] \[--virt-type kvm\|qemu\]/);
    expect(help.stdout).toContain('--virt-type compares');
    expect(help.stdout).toContain('keeps\ninvtsc and xsaves');
  });

  it('--migratable keeps invtsc and xsaves, as virsh hypervisor-cpu-baseline --migratable does', async () => {
    const file = path.join(state, 'invtsc.xml');
    writeFileSync(file, "<cpu><arch>x86_64</arch><model>Skylake-Client</model><vendor>Intel</vendor><feature name='invtsc'/><feature name='xsaves'/></cpu>");
    const run = await runNovalet(['cpu-baseline', '--migratable', '--virt-type', 'qemu', '--config-file', conf, file]);
    expect(run.status, run.stderr).toBe(0);
    const theirs = virsh('hypervisor-cpu-baseline', file, '--virttype', 'qemu', '--migratable');
    for (const feature of ['invtsc', 'xsaves']) {
      expect(run.stdout).toContain(`name='${feature}'`);
      expect(theirs).toContain(`name='${feature}'`);
    }
  });
});
