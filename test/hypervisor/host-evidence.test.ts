/** The sysfs and DMI readers on their own: kvm modules and the hypervisor beneath. */
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseCpuInfo } from '../../hypervisor/host/cpuinfo.js';
import { parseNestedParameter, probeKvmModule } from '../../hypervisor/host/kvm-module.js';
import { hypervisorFromDmi, probeOuterHypervisor } from '../../hypervisor/host/outer-hypervisor.js';
import { fixtureRoot } from './fixture-hosts.js';

const scratch = mkdtempSync(path.join(os.tmpdir(), 'novalet-host-evidence-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function tree(name: string, files: Record<string, string>): string {
  const root = path.join(scratch, name);
  for (const [relative, text] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(root, relative)), { recursive: true });
    writeFileSync(path.join(root, relative), text);
  }
  return root;
}

const NO_CPU_FLAG = parseCpuInfo('');

describe('parseNestedParameter', () => {
  it('reads Y/N and 1/0, and nothing else', () => {
    expect(['Y', 'N', '1', '0', 'y\n', ' 1 '].map(parseNestedParameter)).toEqual([true, false, true, false, true, true]);
    expect(parseNestedParameter(null)).toBeNull();
    expect(parseNestedParameter('maybe')).toBeNull();
  });
});

describe('probeKvmModule', () => {
  it('reads the fixtures\' vendor modules', async () => {
    expect(await probeKvmModule(fixtureRoot('intel-kvm-nested'))).toMatchObject({ name: 'kvm_intel', nested: true });
    expect(await probeKvmModule(fixtureRoot('amd-kvm-nested'))).toMatchObject({ name: 'kvm_amd', nestedRaw: '1', nested: true });
    expect(await probeKvmModule(fixtureRoot('pvm-host'))).toMatchObject({ name: 'kvm_pvm', nestedRaw: null, nested: null });
    expect(await probeKvmModule(fixtureRoot('vmware-no-vmx'))).toEqual({ name: null, kvmCorePresent: false, nestedRaw: null, nested: null });
  });

  it('names kvm_intel before kvm_pvm when both are there, and finds no core without /sys/module', async () => {
    const both = tree('both-modules', {
      'sys/module/kvm/parameters/halt_poll_ns': '200000\n',
      'sys/module/kvm_pvm/parameters/verbose': 'N\n',
      'sys/module/kvm_intel/parameters/nested': 'N\n',
    });
    expect(await probeKvmModule(both)).toEqual({ name: 'kvm_intel', kvmCorePresent: true, nestedRaw: 'N', nested: false });
    expect(await probeKvmModule(tree('empty', { 'proc/cpuinfo': '' }))).toEqual({ name: null, kvmCorePresent: false, nestedRaw: null, nested: null });
  });
});

describe('hypervisorFromDmi', () => {
  it('names the hypervisors DMI shows, and not real hardware', () => {
    const cases: [string | null, string | null, string | null][] = [
      ['VMware, Inc.', 'VMware Virtual Platform', 'VMware'],
      ['VMware, Inc.', 'VMware20,1', 'VMware'],
      ['QEMU', 'Standard PC (Q35 + ICH9, 2009)', 'QEMU/KVM'],
      ['Red Hat', 'KVM', 'QEMU/KVM'],
      ['OpenStack Foundation', 'OpenStack Nova', 'QEMU/KVM'],
      ['Microsoft Corporation', 'Virtual Machine', 'Microsoft Hyper-V'],
      ['Microsoft Corporation', 'Surface Laptop 4', null],
      ['Xen', 'HVM domU', 'Xen'],
      ['innotek GmbH', 'VirtualBox', 'VirtualBox'],
      ['Amazon EC2', 'm5.large', 'Amazon EC2'],
      ['Amazon EC2', 'm5.metal', null],
      ['Google', 'Google Compute Engine', 'Google Compute Engine'],
      ['Dell Inc.', 'PowerEdge R640', null],
      [null, null, null],
    ];
    for (const [vendor, product, name] of cases) expect(hypervisorFromDmi(vendor, product), `${vendor} / ${product}`).toBe(name);
  });
});

describe('probeOuterHypervisor', () => {
  it('finds Xen from /sys/hypervisor/type alone', async () => {
    const root = tree('xen-sys', { 'sys/hypervisor/type': 'xen\n' });
    expect(await probeOuterHypervisor(root, NO_CPU_FLAG)).toMatchObject({ xen: true, name: 'Xen', cpuFlag: false });
  });

  it('finds containers: podman, systemd\'s word, docker', async () => {
    const podman = tree('podman', { 'run/.containerenv': 'engine="podman-4.3.1"\n' });
    const nspawn = tree('nspawn', { 'run/systemd/container': 'systemd-nspawn\n', '.dockerenv': '' });
    const docker = tree('docker', { '.dockerenv': '' });
    expect((await probeOuterHypervisor(podman, NO_CPU_FLAG)).container).toBe('podman');
    expect((await probeOuterHypervisor(nspawn, NO_CPU_FLAG)).container).toBe('systemd-nspawn');
    expect((await probeOuterHypervisor(docker, NO_CPU_FLAG)).container).toBe('docker');
  });

  it('leaves the name null when only the cpu flag says "guest"', async () => {
    const cpu = parseCpuInfo('processor\t: 0\nflags\t\t: fpu hypervisor\n');
    expect(await probeOuterHypervisor(fixtureRoot('pvm-host'), cpu)).toEqual({
      cpuFlag: true,
      name: null,
      dmiVendor: null,
      dmiProduct: null,
      xen: false,
      container: null,
    });
  });
});
