import { NovaletError } from '../config/novalet-error.js';
import { printable } from '../config/quote-for-message.js';
import { CompareCpu } from '../hypervisor/libvirt/constants.js';
import { isLibvirtError } from '../hypervisor/libvirt/error.js';
import { CliUsageError } from './cli-usage-error.js';
import { CONFIG_OPTIONS, parseCommandArgs } from './command-options.js';
import { cpuCommandHost, cpuDefinitionsFromFiles, cpuTarget } from './cpu-command-support.js';
import { loadCliConfig } from './load-cli-config.js';
import { progressReporter } from './progress.js';

const HELP = `usage: novalet cpu-compare FILE [--virt-type kvm|qemu] [--json]

Is the CPU described in FILE (an XML <cpu>, a host's capabilities, a domain, or
domain capabilities; or, as JSON, nova's cpu_info or a host's capability
report from novalet capabilities --json) compatible with what this host provides for the virt
type instances run with here (KVM where usable, else TCG)? Answers identical,
superset or incompatible and names the features missing, as libvirt's
virConnectCompareHypervisorCPU (virsh hypervisor-cpu-compare) does.
Exit status: 0 identical or superset, 1 incompatible, 2 bad input or an error
(one line on stderr).`;

/** As virsh words them; 'superset' means the host's CPU holds all the described one asks for. */
function sentence(result: 'identical' | 'superset' | 'incompatible', described: string, host: string): string {
  if (result === 'superset') return `The CPU this host provides for ${host} is a superset of the CPU described in ${described}.`;
  return `CPU described in ${described} is ${result === 'identical' ? 'identical to' : 'incompatible with'} the CPU this host provides for ${host}.`;
}

export async function runCpuCompare(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs('cpu-compare', argv, { ...CONFIG_OPTIONS, json: { type: 'boolean' }, 'virt-type': { type: 'string' } });
  if (values.help) {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  if (positionals.length !== 1) throw new CliUsageError('cpu-compare: give exactly one FILE.');
  const requested = values['virt-type'];
  if (requested !== undefined && requested !== 'kvm' && requested !== 'qemu') throw new CliUsageError(`cpu-compare: --virt-type must be kvm or qemu, not '${requested}'.`);
  const { loaded, log } = loadCliConfig(values);
  const file = positionals[0] as string;
  // As virsh: the first CPU definition in the file is the one compared.
  const [cpu] = await cpuDefinitionsFromFiles([file]);
  if (!cpu) throw new NovaletError('CPU_XML_NO_CPU', `${file} holds no CPU definition.`);
  const host = await cpuCommandHost(loaded.values, progressReporter('cpu-compare', log));
  const { connection } = host;
  try {
    const { target, description } = cpuTarget(host, [cpu.arch], requested);
    const result = await connection.compareHypervisorCpu(cpu.xml, target);
    let missing: string | null = null;
    if (result === 'incompatible') {
      // Asked again to fail on incompatibility, libvirt says what is missing.
      try {
        await connection.compareHypervisorCpu(cpu.xml, target, CompareCpu.FAIL_INCOMPATIBLE);
      } catch (err) {
        if (!isLibvirtError(err)) throw err;
        missing = err.libvirtMessage.replace(/^the CPU is incompatible with host CPU:\s*/i, '').trim();
      }
    }
    if (values.json) {
      process.stdout.write(`${JSON.stringify({ file, model: cpu.model, arch: cpu.arch, target, result, missing }, null, 2)}\n`);
    } else {
      // The file's name and model, and libvirt's words about its features, escaped: they reach a terminal.
      process.stdout.write(`${printable(sentence(result, `${file} (${cpu.model})`, description))}\n`);
      if (missing) process.stdout.write(`${printable(missing)}\n`);
    }
    return result === 'incompatible' ? 1 : 0;
  } finally {
    await host.close();
  }
}
