/**
 * service/config-reload.ts: what a SIGHUP's reload applies and what waits
 * for a restart, logged as oslo.config's mutate_config_files logs it
 * (WARNING "Ignoring change to immutable option <group>.<option>" first,
 * then INFO "Option <group>.<option> changed from [old] to [new]",
 * [DEFAULT] first), secrets masked as `novalet config show` masks them.
 * The configurations are loaded from text by config/load-config.ts, as the
 * files would be.
 */
import { describe, expect, it } from 'vitest';
import { parseConfigText } from '../../config/load-config.js';
import { reloadConfig } from '../../service/config-reload.js';
import { capturedLogger } from '../support/captured-logger.js';

const MUTABLE = ['DEFAULT.debug', 'DEFAULT.report_interval', 'DEFAULT.cpu_allocation_ratio', 'DEFAULT.ram_allocation_ratio', 'DEFAULT.reserved_host_memory_mb'];
const conf = (text: string) => parseConfigText(text, '/etc/novalet/novalet.conf');

interface Line {
  level: number;
  msg: string;
  option?: string;
}

function reload(before: string, after: string, mutable: readonly string[] = MUTABLE) {
  const logger = capturedLogger<Line>();
  const outcome = reloadConfig(conf(before), conf(after), mutable, logger.log);
  return { outcome, lines: logger.lines, raw: logger.raw.join('\n') };
}

describe('reloadConfig', () => {
  it('applies a mutable option that changed, logging it as oslo.config does', () => {
    const { outcome, lines } = reload('[DEFAULT]\nreport_interval = 10\n', '[DEFAULT]\nreport_interval = 30\ndebug = true\n');
    expect(outcome.applied).toEqual([
      { option: 'DEFAULT.debug', section: 'DEFAULT', name: 'debug', old: false, new: true },
      { option: 'DEFAULT.report_interval', section: 'DEFAULT', name: 'report_interval', old: 10, new: 30 },
    ]);
    expect(outcome.ignored).toEqual([]);
    expect(lines.map((l) => [l.level, l.msg])).toEqual([
      [30, 'Option DEFAULT.debug changed from [false] to [true]'],
      [30, 'Option DEFAULT.report_interval changed from [10] to [30]'],
    ]);
    expect(outcome.effective.values.DEFAULT.report_interval).toBe(30);
    expect(outcome.effective.values.DEFAULT.debug).toBe(true);
  });

  it('keeps an immutable option that changed, with a warning that a restart applies it; warnings first, [DEFAULT] first', () => {
    const { outcome, lines } = reload(
      '[DEFAULT]\nmax_concurrent_builds = 4\n[api]\nport = 8789\n',
      '[api]\nport = 8790\nlisten = 0.0.0.0\n[DEFAULT]\nmax_concurrent_builds = 2\ncpu_allocation_ratio = 4.0\n',
    );
    expect(outcome.ignored.map((c) => [c.option, c.old, c.new])).toEqual([
      ['DEFAULT.max_concurrent_builds', 4, 2],
      ['api.listen', '127.0.0.1', '0.0.0.0'],
      ['api.port', 8789, 8790],
    ]);
    expect(outcome.applied.map((c) => [c.option, c.old, c.new])).toEqual([['DEFAULT.cpu_allocation_ratio', null, 4]]);
    expect(lines.map((l) => [l.level, l.msg])).toEqual([
      [40, 'Ignoring change to immutable option DEFAULT.max_concurrent_builds: the service keeps [4] (the files now say [2]) until it restarts'],
      [40, 'Ignoring change to immutable option api.listen: the service keeps [127.0.0.1] (the files now say [0.0.0.0]) until it restarts'],
      [40, 'Ignoring change to immutable option api.port: the service keeps [8789] (the files now say [8790]) until it restarts'],
      [30, 'Option DEFAULT.cpu_allocation_ratio changed from [<None>] to [4]'],
    ]);
    // What runs: the mutable option from the files, the others as they were.
    expect(outcome.effective.values.api.port).toBe(8789);
    expect(outcome.effective.values.api.listen).toBe('127.0.0.1');
    expect(outcome.effective.values.DEFAULT.max_concurrent_builds).toBe(4);
    expect(outcome.effective.values.DEFAULT.cpu_allocation_ratio).toBe(4);
    expect(outcome.effective.sources.DEFAULT.cpu_allocation_ratio).toEqual({ file: '/etc/novalet/novalet.conf', line: 6 });
    expect(outcome.effective.sources.api.port).toEqual({ file: '/etc/novalet/novalet.conf', line: 4 });
  });

  it('warns again at the next reload while the files still differ from what runs, and applies nothing twice', () => {
    const logger = capturedLogger<Line>();
    const first = reloadConfig(conf('[api]\nport = 8789\n'), conf('[api]\nport = 8790\n[DEFAULT]\ndebug = true\n'), MUTABLE, logger.log);
    const second = reloadConfig(first.effective, conf('[api]\nport = 8790\n[DEFAULT]\ndebug = true\n'), MUTABLE, logger.log);
    expect(second.applied).toEqual([]);
    expect(second.ignored.map((c) => c.option)).toEqual(['api.port']);
    expect(logger.lines.map((l) => l.msg)).toEqual([
      'Ignoring change to immutable option api.port: the service keeps [8789] (the files now say [8790]) until it restarts',
      'Option DEFAULT.debug changed from [false] to [true]',
      'Ignoring change to immutable option api.port: the service keeps [8789] (the files now say [8790]) until it restarts',
    ]);
  });

  it('says nothing when nothing changed, even when the value moved to another line or file', () => {
    const logger = capturedLogger<Line>();
    const outcome = reloadConfig(conf('[DEFAULT]\nreport_interval = 30\n'), parseConfigText('\n\n[DEFAULT]\n# moved\nreport_interval = 30\n', '/etc/novalet/other.conf'), MUTABLE, logger.log);
    expect(outcome.applied).toEqual([]);
    expect(outcome.ignored).toEqual([]);
    expect(logger.lines).toEqual([]);
  });

  it('an option removed from the files goes back to its default, and its setting goes with it', () => {
    const { outcome, lines } = reload('[DEFAULT]\ndebug = true\nreserved_host_memory_mb = 1024\n', '[DEFAULT]\n');
    expect(lines.map((l) => l.msg)).toEqual(['Option DEFAULT.debug changed from [true] to [false]', 'Option DEFAULT.reserved_host_memory_mb changed from [1024] to [512]']);
    expect(outcome.effective.sources.DEFAULT.debug).toBe('default');
    expect(outcome.effective.settings.DEFAULT.debug).toBeUndefined();
  });

  it("masks secrets in its lines and its changes as `config show` does: a URL's password, a value taken from a secret", () => {
    const before = '[DEFAULT]\ntransport_url = rabbit://nova:OldSecret1@rmq1:5672/\n';
    const after = '[DEFAULT]\ntransport_url = rabbit://nova:NewSecret2@rmq2:5672/\n';
    const immutable = reload(before, after);
    expect(immutable.outcome.ignored).toEqual([
      { option: 'DEFAULT.transport_url', section: 'DEFAULT', name: 'transport_url', old: 'rabbit://nova:***@rmq1:5672/', new: 'rabbit://nova:***@rmq2:5672/' },
    ]);
    const applied = reload(before, after, [...MUTABLE, 'DEFAULT.transport_url']);
    expect(applied.lines.map((l) => l.msg)).toEqual(['Option DEFAULT.transport_url changed from [rabbit://nova:***@rmq1:5672/] to [rabbit://nova:***@rmq2:5672/]']);
    for (const { raw } of [immutable, applied]) {
      expect(raw).not.toContain('OldSecret1');
      expect(raw).not.toContain('NewSecret2');
    }
    // The effective configuration keeps the real value: only what is shown is masked.
    expect(applied.outcome.effective.values.DEFAULT.transport_url).toBe('rabbit://nova:NewSecret2@rmq2:5672/');
  });

  it('shows a list as `config show` does', () => {
    const { lines } = reload('', '[import_filtering_opts]\nallowed_ports = 80,443,8080\n');
    expect(lines.map((l) => l.msg)).toEqual(['Ignoring change to immutable option import_filtering_opts.allowed_ports: the service keeps [80,443] (the files now say [80,443,8080]) until it restarts']);
  });

  it('refuses a mutable option the option table does not have (a mistake in the list would never apply)', () => {
    expect(() => reloadConfig(conf(''), conf(''), ['DEFAULT.debugg', 'debug'], capturedLogger().log)).toThrow(/no such option DEFAULT\.debugg, debug/);
  });

  it('leaves the configurations it was given unchanged', () => {
    const previous = conf('[DEFAULT]\ndebug = false\n[api]\nport = 8789\n');
    const next = conf('[DEFAULT]\ndebug = true\n[api]\nport = 8790\n');
    const snapshot = JSON.stringify([previous, next]);
    const outcome = reloadConfig(previous, next, MUTABLE, capturedLogger().log);
    expect(JSON.stringify([previous, next])).toBe(snapshot);
    outcome.effective.values.DEFAULT.report_interval = 1;
    expect(previous.values.DEFAULT.report_interval).not.toBe(1);
  });
});
