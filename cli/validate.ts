import type { NovaletConfig } from '../config/novalet-config.js';
import { NovaletError } from '../config/novalet-error.js';
import { assembleComputeHost, knownHost, type ComputeHost } from '../hypervisor/compute-host.js';
import { formatValidationReport, type ValidationReport } from '../hypervisor/validation/host-checks.js';
import { validateAssembledHost, validateWithoutLibvirt } from '../hypervisor/validation/validate-host.js';
import { CONFIG_OPTIONS, parseCommandArgs } from './command-options.js';
import { loadCliConfig } from './load-cli-config.js';
import { CommandLifetime } from './command-lifetime.js';
import { progressReporter } from './progress.js';

const HELP = `usage: novalet validate [--json] [--self-test] [--config-file FILE]... [--config-dir DIR]...

Checks, in the manner of virt-host-validate, what this host can virtualize and
whether the configuration can run instances here (the CPU options as libvirt's
domain capabilities judge them); the last line says whether instances will run
under KVM or under TCG software emulation, and why. Where /dev/kvm answers but
no guest has been booted under KVM in this boot, KVM is unproven: --self-test
boots the test guest under KVM now and records the result for this boot.
Exit status: 0 instances can run here, 1 they cannot, 2 bad configuration;
with --self-test, 1 also when the self-test failed or could not run.`;

/**
 * The host as the one assembly gives it (this boot's self-test, or a new one
 * with `selfTest`), validated; where libvirt cannot be asked, what is known
 * without it.
 */
export async function validateThisHost(config: NovaletConfig, options: { selfTest: boolean; progress?: (what: string) => void; signal?: AbortSignal }): Promise<ValidationReport> {
  let host: ComputeHost;
  try {
    host = await assembleComputeHost({
      config,
      purpose: 'command',
      selfTest: options.selfTest ? 'again' : 'recorded',
      ...(options.progress ? { progress: options.progress } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
    });
  } catch (err) {
    options.signal?.throwIfAborted();
    if (!(err instanceof NovaletError)) throw err;
    return validateWithoutLibvirt(await knownHost(config), config, err, options.selfTest);
  }
  try {
    return await validateAssembledHost(host);
  } finally {
    await host.close();
  }
}

export async function runValidate(argv: string[]): Promise<number> {
  const { values } = parseCommandArgs('validate', argv, { ...CONFIG_OPTIONS, json: { type: 'boolean' }, 'self-test': { type: 'boolean' } });
  if (values.help) {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  const { loaded, log } = loadCliConfig(values);
  const selfTest = Boolean(values['self-test']);
  // Only the self-test starts something (its guest) that a signal must not leave behind.
  const lifetime = selfTest ? new CommandLifetime() : null;
  let report;
  try {
    report = await validateThisHost(loaded.values, { selfTest, progress: progressReporter('validate', log), ...(lifetime ? { signal: lifetime.signal } : {}) });
  } catch (err) {
    if (lifetime?.interrupted == null) throw err;
    process.stderr.write(`novalet validate: ${lifetime.interrupted.message}; the self-test's guest is removed.\n`);
    return lifetime.interrupted.exitStatus;
  } finally {
    lifetime?.close();
  }
  log.debug(
    { kvm_usable: report.kvm.usable, reasons: report.kvm.reasons.map((r) => r.code), virt_type: report.virt_type, effective_virt_type: report.effective_virt_type },
    'host validated',
  );
  process.stdout.write(values.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatValidationReport(report)}\n`);
  if (!report.can_run_instances) return 1;
  // --self-test answers whether KVM really runs guests, where that was the question.
  if (selfTest && (report.kvm_unproven || report.self_test?.passed === false)) return 1;
  return 0;
}
