/**
 * What this host gives, for tests of the commands on the live machine:
 * the virt type instances get under a configuration, judged as the commands
 * judge it (the probe and this boot's recorded self-test, compute-host.ts),
 * and what virsh says of the same. Tests compare the commands' output with
 * these rather than with one machine's answers, so that they hold on a host
 * with working KVM as on the PVM build machines.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { loadConfig } from '../../config/load-config.js';
import type { NovaletConfig } from '../../config/novalet-config.js';
import { knownHost } from '../../hypervisor/compute-host.js';
import type { VirtTypeDecision } from '../../hypervisor/virt-type/decision.js';
import { EMBEDDED_QEMU_CONF } from '../../hypervisor/libvirt/embedded-root.js';

export async function virtTypeHere(configFile: string): Promise<VirtTypeDecision & { config: NovaletConfig }> {
  const config = loadConfig({ configFiles: [configFile] }).values;
  const host = await knownHost(config);
  return { ...host.virtType, config };
}

/** The words `novalet run` and the logs use for a virt type. */
export function virtTypeWords(virtType: 'kvm' | 'qemu'): string {
  return virtType === 'kvm' ? 'KVM' : 'TCG software emulation (qemu)';
}

/** virsh on an embedded root of its own (one process per root), its log kept out of the output. */
export function virshOn(root: string): (...args: string[]) => string {
  mkdirSync(`${root}/etc`, { recursive: true });
  writeFileSync(`${root}/etc/qemu.conf`, EMBEDDED_QEMU_CONF);
  return (...args: string[]) =>
    execFileSync('virsh', ['-c', `qemu:///embed?root=${root}`, ...args], {
      encoding: 'utf8',
      maxBuffer: 16 * 1024 * 1024,
      env: { ...process.env, LIBVIRT_LOG_OUTPUTS: '1:file:/dev/null' },
    });
}
