import { existsSync } from 'node:fs';
import path from 'node:path';
import type { NovaletConfig } from '../config/novalet-config.js';
import { probeHost } from '../hypervisor/host-probe.js';
import { qemuVersion, readBootId, readCachedSelfTest, SELF_TEST_CACHE, verdictWithSelfTest, type SelfTestResult } from '../hypervisor/kvm-self-test.js';
import { judgeKvm } from '../hypervisor/kvm-verdict.js';
import { probeHostTools } from '../hypervisor/host-tools.js';
import { validateHost, formatValidationReport } from '../hypervisor/host-validation.js';
import { CONFIG_OPTIONS, parseCommandArgs } from './command-options.js';
import { loadCliConfig } from './load-cli-config.js';

const HELP = `usage: novalet validate [--json] [--config-file FILE]... [--config-dir DIR]...

Checks, in the manner of virt-host-validate, what this host can virtualize and
whether the configuration can run instances here; the last line says whether
instances will run under KVM or under TCG software emulation, and why.
Exit status: 0 instances can run here, 1 they cannot, 2 bad configuration.`;

/** The self-test result of this boot, if novalet has run it; validate never boots a guest itself. */
async function cachedSelfTest(config: NovaletConfig, emulator: string | undefined): Promise<SelfTestResult | null> {
  if (!emulator) return null;
  const cacheFile = path.join(config.DEFAULT.state_path, SELF_TEST_CACHE);
  if (!existsSync(cacheFile)) return null;
  const [bootId, version] = await Promise.all([readBootId(), qemuVersion(emulator)]);
  return readCachedSelfTest(cacheFile, bootId, version);
}

export async function runValidate(argv: string[]): Promise<number> {
  const { values } = parseCommandArgs('validate', argv, { ...CONFIG_OPTIONS, json: { type: 'boolean' } });
  if (values.help) {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  const { loaded, log } = loadCliConfig(values);
  const config = loaded.values;
  const [probe, tools] = await Promise.all([probeHost(), probeHostTools()]);
  const selfTest = await cachedSelfTest(config, tools.qemuEmulators[probe.arch]);
  const verdict = verdictWithSelfTest(judgeKvm(probe), selfTest);
  const report = validateHost({ probe, verdict, tools, config, selfTest });
  log.debug(
    { kvm_usable: verdict.usable, reasons: verdict.reasons.map((r) => r.code), virt_type: report.virt_type, effective_virt_type: report.effective_virt_type },
    'host validated',
  );
  process.stdout.write(values.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatValidationReport(report)}\n`);
  return report.can_run_instances ? 0 : 1;
}
