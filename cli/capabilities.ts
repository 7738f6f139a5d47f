import { printable } from '../config/quote-for-message.js';
import { assembleComputeHost } from '../hypervisor/compute-host.js';
import type { HostCpuReport, VirtTypeCpuReport } from '../hypervisor/cpu/host-report.js';
import { CliUsageError } from './cli-usage-error.js';
import { CONFIG_OPTIONS, parseCommandArgs } from './command-options.js';
import { loadCliConfig } from './load-cli-config.js';
import { progressReporter } from './progress.js';

const HELP = `usage: novalet capabilities [--json] [--config-file FILE]... [--config-dir DIR]...

What this host advertises about CPUs, from libvirt:
  - the host CPU as nova's cpu_info (arch, model, vendor, topology with the
    number of NUMA cells, features), from libvirt's host capabilities;
  - for each virt type available here (qemu always; kvm only where KVM is
    usable), the guest CPU models QEMU can give, and the host-model CPU with
    its required and disabled features, as KubeVirt's node labeller reports
    them (from libvirt's domain capabilities);
  - the guest CPU this configuration gives instances here ([libvirt] cpu_mode,
    cpu_models, cpu_model_extra_flags, for the virt type instances run with),
    every feature it has as libvirt expands it, and nova's CPU traits
    (HW_CPU_X86_*) for those features.
--json prints the same as data, cpu_info in nova's shape.
Exit status: 0; 1 when instances cannot run here or the configured guest CPU
cannot be given (the reason is printed with the rest); 2 bad configuration.`;

const WIDTH = 100;

/** Words filled into lines of at most WIDTH characters, each line indented. */
function fill(words: string[], indent: string): string[] {
  if (words.length === 0) return [`${indent}(none)`];
  const lines: string[] = [];
  let line = '';
  for (const word of words) {
    if (line !== '' && indent.length + line.length + 1 + word.length > WIDTH) {
      lines.push(indent + line);
      line = '';
    }
    line = line === '' ? word : `${line} ${word}`;
  }
  lines.push(indent + line);
  return lines;
}

const plural = (n: number | null, word: string) => (n === null ? `? ${word}s` : `${n} ${word}${n === 1 ? '' : 's'}`);

function virtTypeLines(name: string, v: VirtTypeCpuReport): string[] {
  const what = name === 'kvm' ? 'KVM' : 'TCG software emulation';
  const lines = [`Virt type ${name} (${what}), ${v.emulator}${v.machine ? `, machine ${v.machine}` : ''}:`];
  lines.push(`  usable CPU models (${v.usable_models.length}):`, ...fill(v.usable_models, '    '));
  const hm = v.host_model;
  if (!hm.supported) {
    lines.push('  host-model: not supported');
  } else {
    lines.push(`  host-model: ${hm.name ?? '(no model named)'}${hm.vendor ? ` (${hm.vendor})` : ''}`);
    lines.push(`    required features (${hm.required_features.length}):`, ...fill(hm.required_features, '      '));
    lines.push(`    disabled features (${hm.disabled_features.length}):`, ...fill(hm.disabled_features, '      '));
  }
  lines.push(`  host-passthrough: ${v.host_passthrough_supported ? 'supported' : 'not supported'}`);
  return lines;
}

export function formatCapabilities(report: HostCpuReport): string {
  const info = report.cpu_info;
  const t = info.topology;
  const lines = [
    "Host CPU (nova's cpu_info, from libvirt's host capabilities):",
    `  arch ${info.arch}, model ${info.model ?? '(none)'}, vendor ${info.vendor ?? '(none)'}`,
    `  topology: ${plural(t.cells, 'NUMA cell')}, ${plural(t.sockets, 'socket')}, ${plural(t.cores, 'core')} per socket, ${plural(t.threads, 'thread')} per core`,
    `  features (${info.features.length}):`,
    ...fill(info.features, '    '),
    '',
    report.kvm.usable
      ? 'KVM is usable here: virt types qemu and kvm.'
      : `KVM is not usable here (${report.kvm.reasons.map((r) => r.code).join(', ')}; novalet validate says why): virt type qemu only.`,
  ];
  for (const [name, v] of Object.entries(report.virt_types)) lines.push('', ...virtTypeLines(name, v));

  const guest = report.guest_cpu;
  lines.push('', 'Guest CPU for instances here:');
  if (guest.virt_type === null) {
    lines.push(`  Instances cannot run here: ${guest.virt_type_reason}`);
  } else {
    lines.push(`  virt type ${guest.virt_type}: ${guest.virt_type_reason}`);
    if (guest.error) lines.push(`  The configured CPU cannot be given here: ${guest.error.message}`);
    if (guest.setting) lines.push(`  ${guest.setting}`);
    if (guest.substitution) lines.push(`  ${guest.substitution}`);
    if (guest.features !== null) {
      lines.push(`  features (${guest.features.length}), as libvirt expands ${guest.model ?? 'it'}, cpu_model_extra_flags applied:`, ...fill(guest.features, '    '));
      lines.push(`  nova CPU traits (${guest.traits.length}):`, ...fill(guest.traits, '    '));
    }
  }
  // Names come from libvirt and the configuration: no control character reaches the terminal.
  return lines.map(printable).join('\n');
}

export async function runCapabilities(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs('capabilities', argv, { ...CONFIG_OPTIONS, json: { type: 'boolean' } });
  if (values.help) {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  if (positionals.length > 0) throw new CliUsageError(`capabilities: unexpected argument '${positionals[0]}'; the command takes options only (see novalet capabilities --help).`);
  const { loaded, log } = loadCliConfig(values);
  const config = loaded.values;
  const host = await assembleComputeHost({ config, purpose: 'command', selfTest: 'recorded', progress: progressReporter('capabilities', log) });
  let report: HostCpuReport;
  try {
    report = (await host.driver.hostCapabilities()).cpu;
  } finally {
    await host.close();
  }
  process.stdout.write(values.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatCapabilities(report)}\n`);
  return report.guest_cpu.can_run_instances ? 0 : 1;
}
