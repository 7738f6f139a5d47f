/**
 * libvirt's capability documents from the embedded QEMU driver on this
 * machine, parsed; checked against virsh (another process, another root),
 * against /proc/cpuinfo and /dev/kvm, and against the QEMU installed (its
 * version names the machine types), so that they hold on any host.
 */
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CapabilitiesXmlError,
  parseCapabilities,
  parseDomainCapabilities,
  type DomainCapabilities,
  type HostCapabilities,
} from '../../hypervisor/libvirt/capabilities.js';
import { prepareEmbeddedRoot } from '../../hypervisor/libvirt/embedded-root.js';
import { CompareCpu } from '../../hypervisor/libvirt/constants.js';
import type { LibvirtConnection } from '../../hypervisor/libvirt/connection.js';
import { LibvirtError } from '../../hypervisor/libvirt/error.js';
import { isLibvirtKvmMissing } from '../../hypervisor/virt-type/kvm-fault.js';
import { openTestRoot, TEST_POOL_BASE } from './libvirt-test-support.js';

const run = promisify(execFile);
/** virsh's own root: a second process cannot share the test connection's. */
const VIRSH_ROOT = `${TEST_POOL_BASE}/virsh-check`;
const X86_TCG = { virttype: 'qemu', arch: 'x86_64' };

let connection: LibvirtConnection;
let host: HostCapabilities;
let tcg: DomainCapabilities;
/** QEMU's major.minor, which its versioned machine types carry (pc-i440fx-7.2, pc-q35-10.0). */
let qemuRelease: string;
const cpuinfoFlags = (/^flags\s*:(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? '').trim().split(/\s+/);
const kvmDeviceHere = existsSync('/dev/kvm') && statSync('/dev/kvm').isCharacterDevice();

beforeAll(async () => {
  ({ connection } = await openTestRoot());
  host = parseCapabilities(await connection.getCapabilities());
  tcg = parseDomainCapabilities(await connection.getDomainCapabilities(X86_TCG));
  const { stdout } = await run('/usr/bin/qemu-system-x86_64', ['--version']);
  qemuRelease = /version (\d+\.\d+)/.exec(stdout)?.[1] ?? 'unknown';
}, 120_000);

afterAll(async () => {
  await connection?.close();
});

function cpuXml(model: string): string {
  return `<cpu mode='custom' match='exact'><model fallback='forbid'>${model}</model></cpu>`;
}

describe('host capabilities', () => {
  it('describe this x86_64 host CPU with a topology and features', () => {
    expect(host.host.arch).toBe('x86_64');
    expect(host.host.cpu.arch).toBe('x86_64');
    expect(host.host.cpu.model).toMatch(/\S/);
    expect(['Intel', 'AMD']).toContain(host.host.cpu.vendor);
    const topology = host.host.cpu.topology!;
    expect(topology.sockets * (topology.dies ?? 1) * topology.cores * topology.threads).toBeGreaterThanOrEqual(1);
    // What the kernel shows of virtualization, libvirt shows too (these names are the same in both).
    for (const flag of ['hypervisor', 'vmx', 'svm']) expect(host.host.cpu.features.includes(flag), flag).toBe(cpuinfoFlags.includes(flag));
  });

  it("count the host's NUMA cells as libvirt lists them from sysfs", () => {
    const nodes = readdirSync('/sys/devices/system/node').filter((name) => /^node\d+$/.test(name));
    expect(nodes.length).toBeGreaterThanOrEqual(1);
    expect(host.host.numaCells).toBe(nodes.length);
  });

  it('offer an x86_64 hvm guest on /usr/bin/qemu-system-x86_64 with domain types qemu and, where /dev/kvm is there, kvm', () => {
    const x86 = host.guests.find((guest) => guest.arch === 'x86_64' && guest.osType === 'hvm');
    expect(x86).toBeDefined();
    expect(x86!.emulator).toBe('/usr/bin/qemu-system-x86_64');
    expect(x86!.wordsize).toBe(64);
    expect(x86!.domainTypes).toContain('qemu');
    // libvirt offers kvm wherever /dev/kvm answers, whether or not KVM really runs guests.
    expect(x86!.domainTypes.includes('kvm')).toBe(kvmDeviceHere);
    const pc = x86!.machines.find((machine) => machine.name === 'pc');
    const q35 = x86!.machines.find((machine) => machine.name === 'q35');
    expect(pc).toMatchObject({ canonical: `pc-i440fx-${qemuRelease}` });
    expect(q35).toMatchObject({ canonical: `pc-q35-${qemuRelease}` });
    expect(pc!.maxCpus).toBeGreaterThan(1);
    expect(x86!.machines.find((machine) => machine.name === `pc-i440fx-${qemuRelease}`)).toBeDefined();
  });

  it('offer other architectures under TCG only', () => {
    const aarch64 = host.guests.find((guest) => guest.arch === 'aarch64');
    expect(aarch64?.emulator).toBe('/usr/bin/qemu-system-aarch64');
    expect(aarch64?.domainTypes).toEqual(['qemu']);
  });

  it('read the same through virsh, in another process on another root', async () => {
    const uri = await prepareEmbeddedRoot(VIRSH_ROOT);
    const { stdout } = await run('virsh', ['-c', uri, 'capabilities'], { maxBuffer: 16 * 1024 * 1024, timeout: 90_000 });
    const seen = parseCapabilities(stdout);
    // With no DMI here (/sys/class/dmi is absent), libvirt makes up a host UUID in each process; the rest is the host's.
    expect(seen.host.uuid).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    expect({ ...seen, host: { ...seen.host, uuid: host.host.uuid } }).toEqual(host);
  }, 100_000);
});

describe('domain capabilities for x86_64 under TCG (virttype qemu)', () => {
  it('name the emulator, virt type, machine and vCPU limit', () => {
    expect(tcg).toMatchObject({
      path: '/usr/bin/qemu-system-x86_64',
      domain: 'qemu',
      machine: `pc-i440fx-${qemuRelease}`,
      arch: 'x86_64',
    });
    expect(tcg.vcpuMax).toBeGreaterThan(1);
  });

  it('offer host-model and custom models but not host-passthrough', () => {
    expect(tcg.cpu.hostPassthrough.supported).toBe(false);
    expect(tcg.cpu.hostModel.supported).toBe(true);
    expect(tcg.cpu.hostModel.model).toMatch(/\S/);
    expect(tcg.cpu.hostModel.features.length).toBeGreaterThan(0);
    expect(tcg.cpu.hostModel.features.every((feature) => feature.policy === 'require' || feature.policy === 'disable')).toBe(true);
    expect(tcg.cpu.custom.supported).toBe(true);
  });

  it('mark the models TCG can emulate usable and those it cannot (AVX-512 ones) not', () => {
    const models = new Map(tcg.cpu.custom.models.map((model) => [model.name, model]));
    expect(models.get('qemu64')).toMatchObject({ usable: 'yes', vendor: 'unknown' });
    expect(models.get('Nehalem')).toMatchObject({ usable: 'yes', vendor: 'Intel' });
    expect(models.get('Skylake-Server-IBRS')).toMatchObject({ usable: 'no', vendor: 'Intel' });
    expect(tcg.cpu.custom.models.every((model) => ['yes', 'no', 'unknown'].includes(model.usable))).toBe(true);
  });

  it('read the same through virsh domcapabilities, in another process on another root', async () => {
    const uri = await prepareEmbeddedRoot(VIRSH_ROOT);
    const { stdout } = await run('virsh', ['-c', uri, 'domcapabilities', '--virttype', 'qemu', '--arch', 'x86_64'], { maxBuffer: 16 * 1024 * 1024, timeout: 90_000 });
    expect(parseDomainCapabilities(stdout)).toEqual(tcg);
  }, 100_000);

  it('under virttype kvm: host-passthrough where /dev/kvm answers (whether or not KVM really works), else libvirt refuses KVM', async () => {
    const asked = connection.getDomainCapabilities({ virttype: 'kvm', arch: 'x86_64' });
    if (kvmDeviceHere) {
      const kvm = parseDomainCapabilities(await asked);
      expect(kvm.domain).toBe('kvm');
      expect(kvm.cpu.hostPassthrough.supported).toBe(true);
    } else {
      const error = await asked.catch((thrown: unknown) => thrown);
      expect(error).toBeInstanceOf(LibvirtError);
      expect(isLibvirtKvmMissing((error as LibvirtError).libvirtMessage)).toBe(true);
    }
  });

  it('for an architecture without an emulator: VIR_ERR_CONFIG_UNSUPPORTED', async () => {
    const error = await connection.getDomainCapabilities({ virttype: 'qemu', arch: 'sparc' }).catch((thrown: unknown) => thrown);
    expect(error).toBeInstanceOf(LibvirtError);
    expect(error).toMatchObject({ libvirtCodeName: 'VIR_ERR_CONFIG_UNSUPPORTED' });
    expect((error as LibvirtError).libvirtMessage).toContain("'sparc'");
  });
});

describe('CPU comparison and baseline against the hypervisor', () => {
  it('TCG provides a superset of qemu64 and cannot provide Skylake-Server-IBRS', async () => {
    expect(await connection.compareHypervisorCpu(cpuXml('qemu64'), X86_TCG)).toBe('superset');
    expect(await connection.compareHypervisorCpu(cpuXml('Skylake-Server-IBRS'), X86_TCG)).toBe('incompatible');
  });

  it('with FAIL_INCOMPATIBLE, an incompatible CPU is a VIR_ERR_CPU_INCOMPATIBLE naming the missing features', async () => {
    const error = await connection
      .compareHypervisorCpu(cpuXml('Skylake-Server-IBRS'), X86_TCG, CompareCpu.FAIL_INCOMPATIBLE)
      .catch((thrown: unknown) => thrown);
    expect(error).toBeInstanceOf(LibvirtError);
    expect((error as LibvirtError).libvirtCodeName).toBe('VIR_ERR_CPU_INCOMPATIBLE');
    expect((error as LibvirtError).libvirtMessage).toMatch(/^the CPU is incompatible with host CPU: Host CPU does not provide required features: .*avx512f/);
  });

  it('a baseline of qemu64 alone is qemu64; a baseline of the host CPU is a model TCG reports', async () => {
    expect(await connection.baselineHypervisorCpu([cpuXml('qemu64')], X86_TCG)).toContain("<model fallback='forbid'>qemu64</model>");
    const capabilities = await connection.getCapabilities();
    const hostCpu = /<cpu>[\s\S]*?<\/cpu>/.exec(capabilities)![0];
    const baseline = await connection.baselineHypervisorCpu([hostCpu], X86_TCG);
    expect(baseline).toMatch(/^<cpu mode='custom' match='exact'>\n {2}<model fallback='forbid'>[^<]+<\/model>/);
  });
});

describe('host NUMA topology as other hosts show it', () => {
  const withTopology = (topology: string) =>
    parseCapabilities(`<capabilities><host><cpu><arch>x86_64</arch><topology sockets='2' cores='8' threads='2'/></cpu>${topology}</host></capabilities>`);

  it('a two-socket host: the <cell>s listed; the CPU topology stays the CPU\'s', () => {
    const caps = withTopology(`<topology><cells num='2'>
      <cell id='0'><memory unit='KiB'>1024</memory><cpus num='1'><cpu id='0' socket_id='0' core_id='0' siblings='0'/></cpus></cell>
      <cell id='1'><memory unit='KiB'>1024</memory><cpus num='1'><cpu id='1' socket_id='1' core_id='0' siblings='1'/></cpus></cell>
    </cells></topology>`);
    expect(caps.host.numaCells).toBe(2);
    expect(caps.host.cpu.topology).toEqual({ sockets: 2, cores: 8, threads: 2 });
  });

  it("cells counted by num when libvirt lists none; null when there is no <topology>", () => {
    expect(withTopology("<topology><cells num='4'/></topology>").host.numaCells).toBe(4);
    expect(withTopology('').host.numaCells).toBeNull();
  });
});

describe('domain capabilities as newer libvirt writes them', () => {
  it('read blockers, deprecated models and canonical names', () => {
    const parsed = parseDomainCapabilities(`<domainCapabilities>
      <path>/usr/bin/qemu-system-x86_64</path><domain>kvm</domain><machine>pc-q35-9.2</machine><arch>x86_64</arch>
      <vcpu max='4096'/>
      <cpu>
        <mode name='host-passthrough' supported='yes'/>
        <mode name='custom' supported='yes'>
          <model usable='no' vendor='Intel' canonical='Skylake-Server-v1'>Skylake-Server</model>
          <blockers model='Skylake-Server'><feature name='avx512f'/><feature name='pku'/></blockers>
          <model usable='yes' vendor='unknown' deprecated='yes'>qemu64</model>
          <model vendor='AMD'>EPYC</model>
        </mode>
      </cpu>
    </domainCapabilities>`);
    expect(parsed.vcpuMax).toBe(4096);
    expect(parsed.cpu.hostPassthrough.supported).toBe(true);
    expect(parsed.cpu.hostModel).toEqual({ supported: false, model: null, fallback: null, vendor: null, features: [] });
    expect(parsed.cpu.maximum.supported).toBe(false);
    expect(parsed.cpu.custom.models).toEqual([
      { name: 'Skylake-Server', usable: 'no', vendor: 'Intel', canonical: 'Skylake-Server-v1', blockers: ['avx512f', 'pku'] },
      { name: 'qemu64', usable: 'yes', vendor: 'unknown', deprecated: true },
      { name: 'EPYC', usable: 'unknown', vendor: 'AMD' },
    ]);
  });
});

describe('parsing errors name the document', () => {
  it('malformed host capabilities', () => {
    const error = (() => {
      try {
        parseCapabilities('<capabilities><host></capabilities>');
        return null;
      } catch (thrown) {
        return thrown;
      }
    })();
    expect(error).toBeInstanceOf(CapabilitiesXmlError);
    expect(error).toMatchObject({ code: 'CAPABILITIES_XML_INVALID', document: 'host capabilities' });
    expect((error as Error).message).toMatch(/^The host capabilities XML from libvirt cannot be read: .*\(line 1, column \d+\)\./);
  });

  it('another document where host capabilities were expected', () => {
    expect(() => parseCapabilities('<domainCapabilities/>')).toThrow(/host capabilities XML .* its root element is not <capabilities>/);
  });

  it('domain capabilities without an emulator path', () => {
    expect(() => parseDomainCapabilities('<domainCapabilities><domain>qemu</domain><arch>x86_64</arch></domainCapabilities>')).toThrow(
      /^The domain capabilities XML from libvirt cannot be read: <domainCapabilities> has no <path>\./,
    );
  });

  it('a guest without an arch name', () => {
    expect(() =>
      parseCapabilities('<capabilities><host><cpu><arch>x86_64</arch></cpu></host><guest><os_type>hvm</os_type><arch/></guest></capabilities>'),
    ).toThrow(/<guest> number 1 has no <arch name=…>/);
  });
});
