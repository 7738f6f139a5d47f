import { describeConfig } from '../config/config-report.js';
import { renderSampleConfig } from '../config/sample-config.js';
import { CliUsageError } from './cli-usage-error.js';
import { CONFIG_OPTIONS, parseCommandArgs } from './command-options.js';
import { loadCliConfig } from './load-cli-config.js';

const HELP = `usage: novalet config show [--json] [--show-secrets] [--config-file FILE]... [--config-dir DIR]...
       novalet config sample

show    every option novalet knows, its effective value and where it came
        from ("<file>:<line>" or "default"); secrets are masked unless
        --show-secrets.
sample  the sample configuration generated from the option definitions
        (etc/novalet.conf.sample is this output).`;

export async function runConfig(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs('config', argv, {
    ...CONFIG_OPTIONS,
    json: { type: 'boolean' },
    'show-secrets': { type: 'boolean' },
  });
  const [sub, ...extra] = positionals;
  if (values.help) {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  if (extra.length > 0) throw new CliUsageError(`config: unexpected argument '${extra[0]}'.`);
  switch (sub) {
    case 'sample':
      process.stdout.write(renderSampleConfig());
      return 0;
    case 'show': {
      const { loaded } = loadCliConfig(values, { state: false });
      const report = describeConfig(loaded, { showSecrets: Boolean(values['show-secrets']) });
      process.stdout.write(values.json ? `${JSON.stringify(report, null, 2)}\n` : formatConfigReport(report));
      return 0;
    }
    default:
      throw new CliUsageError(
        sub === undefined ? 'config: say what to do: show or sample.' : `config: unknown subcommand '${sub}'; use show or sample.`,
      );
  }
}

type ConfigReport = ReturnType<typeof describeConfig>;

function formatConfigReport(report: ConfigReport): string {
  const out: string[] = [];
  for (const [section, options] of Object.entries(report)) {
    out.push(`[${section}]`);
    for (const [name, { value, source }] of Object.entries(options)) {
      const shown = Array.isArray(value) ? value.join(',') : value === null ? '<None>' : String(value);
      out.push(`${name} = ${shown}    # ${source}`);
    }
    out.push('');
  }
  return out.join('\n');
}
