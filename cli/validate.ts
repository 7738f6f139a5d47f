import { validateHost, formatValidationReport } from '../hypervisor/validation/host-checks.js';
import { knownHost } from '../hypervisor/known-verdict.js';
import { CONFIG_OPTIONS, parseCommandArgs } from './command-options.js';
import { loadCliConfig } from './load-cli-config.js';

const HELP = `usage: novalet validate [--json] [--config-file FILE]... [--config-dir DIR]...

Checks, in the manner of virt-host-validate, what this host can virtualize and
whether the configuration can run instances here; the last line says whether
instances will run under KVM or under TCG software emulation, and why.
Exit status: 0 instances can run here, 1 they cannot, 2 bad configuration.`;

export async function runValidate(argv: string[]): Promise<number> {
  const { values } = parseCommandArgs('validate', argv, { ...CONFIG_OPTIONS, json: { type: 'boolean' } });
  if (values.help) {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  const { loaded, log } = loadCliConfig(values);
  const config = loaded.values;
  const { probe, tools, verdict, selfTest } = await knownHost(config);
  const report = validateHost({ probe, verdict, tools, config, selfTest });
  log.debug(
    { kvm_usable: verdict.usable, reasons: verdict.reasons.map((r) => r.code), virt_type: report.virt_type, effective_virt_type: report.effective_virt_type },
    'host validated',
  );
  process.stdout.write(values.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatValidationReport(report)}\n`);
  return report.can_run_instances ? 0 : 1;
}
