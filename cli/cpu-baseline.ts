import { BaselineCpu } from '../hypervisor/libvirt/libvirt-constants.js';
import { CliUsageError } from './cli-usage-error.js';
import { CONFIG_OPTIONS, parseCommandArgs } from './command-options.js';
import { cpuDefinitionsFromFiles, cpuTarget, openCommandConnection } from './cpu-command-support.js';
import { loadCliConfig } from './load-cli-config.js';

const HELP = `usage: novalet cpu-baseline FILE... [--features] [--migratable] [--virt-type kvm|qemu]

The CPU model and features that every CPU in the files can provide, as <cpu>
XML for a guest (libvirt's virConnectBaselineHypervisorCPU, as virsh
hypervisor-cpu-baseline): a pool's migration-safe CPU. Each file may hold a
<cpu>, a host's capabilities, a domain or domain capabilities, several of them
pasted together. --features lists every feature of the model; --migratable
drops the features that prevent migration.`;

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
  const { loaded } = loadCliConfig(values);
  const cpus = await cpuDefinitionsFromFiles(positionals);
  const { target } = await cpuTarget(loaded.values, cpus.map((c) => c.arch), requested);
  const flags = (values.features ? BaselineCpu.EXPAND_FEATURES : 0) | (values.migratable ? BaselineCpu.MIGRATABLE : 0);
  const connection = await openCommandConnection(loaded.values);
  try {
    process.stdout.write(await connection.baselineHypervisorCpu(cpus.map((c) => c.xml), target, flags));
    return 0;
  } finally {
    await connection.close();
  }
}
