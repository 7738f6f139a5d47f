import { randomUUID } from 'node:crypto';
import { assembleComputeHost } from '../hypervisor/compute-host.js';
import { followConsole } from '../hypervisor/instance/console-follow.js';
import { validateInstanceSpec, type InstanceSpec, type ValidInstanceSpec } from '../hypervisor/instance/spec.js';
import type { Logger } from '../config/logger.js';
import type { NovaletConfig } from '../config/novalet-config.js';
import { CommandLifetime } from './command-lifetime.js';
import { progressReporter } from './progress.js';
import { NovaletError } from '../config/novalet-error.js';
import { CliUsageError } from './cli-usage-error.js';
import { CONFIG_OPTIONS, parseCommandArgs } from './command-options.js';
import { loadCliConfig } from './load-cli-config.js';

const HELP = `usage: novalet run [options]

Runs one instance in the foreground through novalet's launch path (KVM
decision and self-test, fallback, image cache, CPU options, domain XML) on
the libvirt [libvirt] connection_uri names (by default an embedded libvirt of
its own under state_path/run), streams its serial console to stdout, and
removes the instance when it ends.

  --name NAME            instance name (default run-<id>)
  --image FILE|URL       root disk image; URLs need --checksum sha256:HEX
  --checksum sha256:HEX  the image's SHA-256
  --kernel FILE --ramdisk FILE --cmdline TEXT   direct kernel boot
  --vcpus N              (default 1)       --memory MiB   (default 256)
  --arch ARCH            guest architecture (default this host's)
  --virt-type kvm|qemu   instead of [libvirt] virt_type
  --wait-for REGEX       stop with 0 once a console line matches
  --timeout SECONDS      stop with 124 after this long, whatever the command
                         is doing then (the download, libvirt's first probe
                         of QEMU, the KVM self-test, the console)

Exit status: 0 the guest powered off (or --wait-for matched), 124 timeout,
128+N ended by signal N (130 SIGINT, 143 SIGTERM, 129 SIGHUP), 1 the
instance could not be launched, 2 bad arguments or configuration. The guest
is destroyed and its files removed in every case, in every phase (download,
KVM self-test, start, console).`;

const RUN_OPTIONS = {
  ...CONFIG_OPTIONS,
  name: { type: 'string' },
  image: { type: 'string' },
  checksum: { type: 'string' },
  kernel: { type: 'string' },
  ramdisk: { type: 'string' },
  cmdline: { type: 'string' },
  vcpus: { type: 'string' },
  memory: { type: 'string' },
  arch: { type: 'string' },
  'virt-type': { type: 'string' },
  'wait-for': { type: 'string' },
  timeout: { type: 'string' },
} as const;

function wholeNumber(option: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  if (!/^\d+$/.test(text)) throw new CliUsageError(`run: --${option} must be a whole number, not '${text}'.`);
  return Number(text);
}

function compileWaitFor(text: string | undefined): RegExp | null {
  if (text === undefined) return null;
  try {
    return new RegExp(text);
  } catch (err) {
    throw new CliUsageError(`run: --wait-for '${text}' is not a regular expression: ${(err as Error).message}.`);
  }
}

type Ending = { status: number; why: string };

export async function runRun(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs('run', argv, RUN_OPTIONS);
  if (values.help) {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  if (positionals.length > 0) throw new CliUsageError(`run: unexpected argument '${positionals[0]}'.`);
  const virtType = values['virt-type'];
  if (virtType !== undefined && virtType !== 'kvm' && virtType !== 'qemu') {
    throw new CliUsageError(`run: --virt-type must be kvm or qemu, not '${virtType}'.`);
  }
  const waitFor = compileWaitFor(values['wait-for']);
  const timeoutSeconds = values.timeout === undefined ? null : wholeNumber('timeout', values.timeout, 0);
  const uuid = randomUUID();
  const spec: InstanceSpec = {
    uuid,
    name: values.name ?? `run-${uuid.slice(0, 8)}`,
    vcpus: wholeNumber('vcpus', values.vcpus, 1),
    memoryMiB: wholeNumber('memory', values.memory, 256),
    image: values.image ? { source: values.image, checksum: values.checksum } : undefined,
    kernel: values.kernel,
    ramdisk: values.ramdisk,
    cmdline: values.cmdline,
    imageProperties: values.arch ? { hw_architecture: values.arch } : {},
    virtType,
  };
  // Nonsense is refused before anything is fetched, opened or started.
  const valid = validateInstanceSpec(spec);
  const { loaded, log } = loadCliConfig(values);
  const lifetime = new CommandLifetime();
  // From here on: the limit bounds the whole command, not only the console.
  if (timeoutSeconds !== null) lifetime.limit(timeoutSeconds);
  try {
    return await runInstance(valid, { config: loaded.values, log, lifetime, waitFor });
  } catch (err) {
    const ended = lifetime.ended;
    if (ended === null) throw err;
    say(`${ended.message}; nothing it had started is left.`);
    return ended.exitStatus;
  } finally {
    lifetime.close();
  }
}

const say = (line: string): void => {
  process.stderr.write(`novalet run: ${line}\n`);
};

async function runInstance(
  valid: ValidInstanceSpec,
  options: { config: NovaletConfig; log: Logger; lifetime: CommandLifetime; waitFor: RegExp | null },
): Promise<number> {
  const { lifetime, waitFor, log } = options;
  const host = await assembleComputeHost({ config: options.config, purpose: 'command', selfTest: 'run', progress: progressReporter('run', log), signal: lifetime.signal });
  const { driver } = host;
  try {
    if (host.swept.domains.length > 0) say(`removed what a killed novalet command left: ${host.swept.domains.join(', ')}.`);
    if (host.selfTest) {
      say(`KVM self-test ${host.selfTest.passed ? 'passed' : 'failed'}${host.selfTest.cached ? ' (cached for this boot)' : ''}: ${host.selfTest.detail}.`);
    }
    const stop = new AbortController();
    let ending: Ending | null = null;
    const end = (e: Ending) => {
      ending ??= e;
      stop.abort();
    };
    // A signal, or the --timeout limit.
    const onInterrupt = () => end({ status: lifetime.ended?.exitStatus ?? 130, why: lifetime.ended?.message ?? 'interrupted' });
    if (lifetime.signal.aborted) onInterrupt();
    else lifetime.signal.addEventListener('abort', onInterrupt, { once: true });
    const unsubscribe = driver.onLifecycleEvent((event) => {
      if (event.uuid === valid.uuid && (event.transition === 'stopped' || event.transition === 'crashed')) {
        end({ status: event.transition === 'stopped' ? 0 : 1, why: `the guest ${event.transition} (${event.detail})` });
      }
    });
    try {
      let launched;
      try {
        launched = await driver.spawn(valid, { signal: lifetime.signal });
      } catch (err) {
        lifetime.signal.throwIfAborted();
        if (!(err instanceof NovaletError)) throw err;
        say(`${valid.name} could not be launched: ${err.message}`);
        return 1;
      }
      say(`${valid.name} (${valid.uuid}) runs under ${launched.virtType === 'kvm' ? 'KVM' : 'TCG software emulation (qemu)'}: ${launched.virtTypeReason}`);
      say(`guest CPU: ${launched.guestCpu.setting}.`);
      if (launched.guestCpu.substitution) say(launched.guestCpu.substitution);
      log.debug({ uuid: valid.uuid, virt_type: launched.virtType, reason: launched.virtTypeReason, guest_cpu: launched.guestCpu }, 'instance launched');
      if (!stop.signal.aborted) {
        for await (const line of followConsole(launched.consoleLog, { signal: stop.signal })) {
          process.stdout.write(`${line}\n`);
          if (waitFor?.test(line)) end({ status: 0, why: `a console line matched --wait-for` });
        }
      }
    } finally {
      unsubscribe();
      lifetime.signal.removeEventListener('abort', onInterrupt);
      // Also after a failed or interrupted spawn: whatever part of the guest exists goes.
      await driver.destroy(valid.uuid);
    }
    const final: Ending = ending ?? { status: 1, why: 'the console ended' };
    say(`${final.why}; the instance is removed.`);
    return final.status;
  } finally {
    await host.close();
  }
}
