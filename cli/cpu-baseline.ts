import { NovaletError } from '../config/novalet-error.js';
import type { CpuDefinition } from '../hypervisor/cpu/definitions.js';
import { BaselineCpu } from '../hypervisor/libvirt/constants.js';
import { isLibvirtError } from '../hypervisor/libvirt/error.js';
import { CliUsageError } from './cli-usage-error.js';
import { CONFIG_OPTIONS, parseCommandArgs } from './command-options.js';
import { cpuCommandHost, cpuDefinitionsFromFiles, cpuTarget } from './cpu-command-support.js';
import { loadCliConfig } from './load-cli-config.js';
import { progressReporter } from './progress.js';

const HELP = `usage: novalet cpu-baseline FILE... [--features] [--migratable] [--virt-type kvm|qemu]

The CPU model and features that every CPU in the files can provide, as <cpu>
XML for a guest (libvirt's virConnectBaselineHypervisorCPU, as virsh
hypervisor-cpu-baseline): a pool's migration-safe CPU. Each file may hold a
<cpu>, a host's capabilities, a domain or domain capabilities, several of them
pasted together; or JSON: nova's cpu_info (openstack hypervisor show -c
cpu_info), a host's capability report (novalet capabilities --json), or a
list of them. --features lists every feature of the model. --migratable
asks libvirt to leave out features that block migration; libvirt 9.0 keeps
invtsc and xsaves all the same, so check the result. --virt-type compares
with KVM or TCG rather than what instances run with here (KVM where usable).
Exit status: 0; 2 bad input (one line on stderr).`;

/** libvirt refuses to baseline CPUs of different vendors; say which CPU is whose. */
function vendorsDiffer(cpus: CpuDefinition[]): NovaletError {
  const byVendor = new Map<string, string[]>();
  for (const cpu of cpus) if (cpu.vendor) byVendor.set(cpu.vendor, [...(byVendor.get(cpu.vendor) ?? []), cpu.source]);
  const listing = [...byVendor].map(([vendor, sources]) => `${vendor}: ${sources.join(', ')}`).join('; ');
  return new NovaletError(
    'CPU_VENDORS_DIFFER',
    `The CPUs come from different vendors (${listing}), and libvirt does not baseline CPUs of different vendors: a guest cannot move between them.`,
    "Baseline each vendor's hosts apart, and keep them in separate pools (host aggregates).",
  );
}

export async function runCpuBaseline(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs('cpu-baseline', argv, {
    ...CONFIG_OPTIONS,
    features: { type: 'boolean' },
    migratable: { type: 'boolean' },
    'virt-type': { type: 'string' },
  });
  if (values.help) {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  if (positionals.length === 0) throw new CliUsageError('cpu-baseline: give at least one FILE.');
  const requested = values['virt-type'];
  if (requested !== undefined && requested !== 'kvm' && requested !== 'qemu') throw new CliUsageError(`cpu-baseline: --virt-type must be kvm or qemu, not '${requested}'.`);
  const { loaded, log } = loadCliConfig(values);
  const cpus = await cpuDefinitionsFromFiles(positionals);
  const flags = (values.features ? BaselineCpu.EXPAND_FEATURES : 0) | (values.migratable ? BaselineCpu.MIGRATABLE : 0);
  const host = await cpuCommandHost(loaded.values, progressReporter('cpu-baseline', log));
  const { connection } = host;
  try {
    const { target } = cpuTarget(host, cpus.map((c) => c.arch), requested);
    try {
      process.stdout.write(await connection.baselineHypervisorCpu(cpus.map((c) => c.xml), target, flags));
    } catch (err) {
      if (isLibvirtError(err) && /CPU vendors do not match/i.test(err.libvirtMessage)) throw vendorsDiffer(cpus);
      throw err;
    }
    return 0;
  } finally {
    await host.close();
  }
}
