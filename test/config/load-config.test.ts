import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DEFAULT_CONFIG_FILE, loadConfig, loadConfigFromSources, parseConfigText } from '../../config/load-config.js';

const NOVA_CONF = path.resolve(import.meta.dirname, '../fixtures/config/nova-compute-deployment.conf');
const lineOf = (text: string, line: string): number => text.split('\n').indexOf(line) + 1;

const work = mkdtempSync(path.join(tmpdir(), 'novalet-config-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
let fileCounter = 0;
function writeConf(text: string, name = `file${++fileCounter}.conf`, dir = work): string {
  const file = path.join(dir, name);
  writeFileSync(file, text);
  return file;
}

describe('a real nova.conf of a compute node', () => {
  const text = readFileSync(NOVA_CONF, 'utf8');
  const loaded = loadConfig({ configFiles: [NOVA_CONF] });
  const at = (line: string) => ({ file: NOVA_CONF, line: lineOf(text, line) });

  it('is a realistic file of well over 150 lines', () => {
    expect(text.split('\n').length).toBeGreaterThan(150);
  });

  it('gives the values novalet implements, typed and substituted', () => {
    expect(loaded.values.DEFAULT).toEqual({
      host: 'compute01.cloud.example.net',
      state_path: '/var/lib/nova',
      instances_path: '/var/lib/nova/instances',
      transport_url:
        'rabbit://nova:Zq8s!pWd@rmq1.cloud.example.net:5672,nova:Zq8s!pWd@rmq2.cloud.example.net:5672,nova:Zq8s!pWd@rmq3.cloud.example.net:5672/',
      report_interval: 10,
      service_down_time: 120,
      cpu_allocation_ratio: 4,
      ram_allocation_ratio: 1.5,
      disk_allocation_ratio: 1,
      initial_cpu_allocation_ratio: 4,
      initial_ram_allocation_ratio: 1,
      initial_disk_allocation_ratio: 1,
      reserved_host_memory_mb: 4096,
      reserved_host_disk_mb: 10240,
      image_download_idle_timeout: 60,
      image_download_timeout: 3600,
      image_download_max_size_mb: 1048576,
      image_download_min_rate: 1024,
      image_download_min_rate_window: 60,
      debug: false,
      rpc_response_timeout: 120,
      max_concurrent_builds: 10,
      shutdown_timeout: 60,
      graceful_shutdown_timeout: 60,
      default_availability_zone: 'nova',
    });
    expect(loaded.values.oslo_messaging_rabbit).toMatchObject({ heartbeat_timeout_threshold: 60, rabbit_quorum_queue: true });
    expect(loaded.values.libvirt).toEqual({
      virt_type: 'qemu',
      connection_uri: '',
      cpu_mode: 'custom',
      cpu_models: ['Nehalem'],
      cpu_model_extra_flags: ['pcid', '+ssse3', '-vmx'],
      hw_machine_type: ['x86_64=pc-q35-7.2', 'aarch64=virt'],
      images_type: 'qcow2',
      fallback_virt_type: 'qemu',
      kvm_selftest_guest_dir: '/var/lib/nova/test-guest',
      kvm_selftest_timeout: 20,
      wait_soft_reboot_seconds: 120,
    });
    // A continued value: continuation lines joined, then split as a list.
    expect(loaded.values.filter_scheduler.enabled_filters).toEqual([
      'AvailabilityZoneFilter',
      'ComputeFilter',
      'ComputeCapabilitiesFilter',
      'ImagePropertiesFilter',
      'ServerGroupAntiAffinityFilter',
      'ServerGroupAffinityFilter',
    ]);
    // [DEFAULT] scheduler_max_attempts is the deprecated name of [scheduler] max_attempts.
    expect(loaded.values.scheduler).toEqual({ max_attempts: 5 });
    expect(loaded.values.api).toEqual({ listen: '10.20.0.31', port: 8789, auth: 'token', auth_token_file: '/var/lib/nova/api-token' });
    expect(loaded.files).toEqual([NOVA_CONF]);
  });

  it('says where every value came from', () => {
    expect(loaded.sources.DEFAULT.host).toEqual(at('host = compute01.cloud.example.net'));
    expect(loaded.sources.DEFAULT.instances_path).toEqual(at('instances_path = $state_path/instances'));
    expect(loaded.sources.DEFAULT.disk_allocation_ratio).toEqual(at('disk_allocation_ratio: 1.0'));
    expect(loaded.sources.DEFAULT.initial_cpu_allocation_ratio).toBe('default');
    expect(loaded.sources.libvirt.cpu_models).toEqual(at('cpu_model = Nehalem'));
    expect(loaded.sources.libvirt.connection_uri).toBe('default');
    expect(loaded.sources.filter_scheduler.enabled_filters).toEqual(at('enabled_filters = AvailabilityZoneFilter,'));
    expect(loaded.sources.scheduler.max_attempts).toEqual(at('scheduler_max_attempts = 5'));
    expect(loaded.settings.libvirt.cpu_models).toEqual({
      ...at('cpu_model = Nehalem'),
      section: 'libvirt',
      option: 'cpu_model',
      raw: 'Nehalem',
      text: 'Nehalem',
      secret: false,
    });
    expect(loaded.settings.DEFAULT.instances_path?.text).toBe('/var/lib/nova/instances');
    expect(loaded.settings.libvirt.connection_uri).toBeUndefined();
  });

  it('reports the deprecated names it honoured', () => {
    expect(loaded.deprecated).toEqual([
      {
        ...at('scheduler_max_attempts = 5'),
        section: 'DEFAULT',
        usedName: 'scheduler_max_attempts',
        name: 'max_attempts',
        newSection: 'scheduler',
        effective: true,
      },
      {
        ...at('cpu_model = Nehalem'),
        section: 'libvirt',
        usedName: 'cpu_model',
        name: 'cpu_models',
        newSection: 'libvirt',
        effective: true,
      },
    ]);
  });

  it('ignores, and lists, every section and option novalet does not implement', () => {
    const ignored = loaded.ignored;
    const known = new Set([
      'DEFAULT host', 'DEFAULT state_path', 'DEFAULT instances_path', 'DEFAULT debug', 'DEFAULT transport_url',
      'DEFAULT report_interval', 'DEFAULT service_down_time', 'DEFAULT cpu_allocation_ratio',
      'DEFAULT ram_allocation_ratio', 'DEFAULT disk_allocation_ratio', 'DEFAULT reserved_host_memory_mb',
      'DEFAULT reserved_host_disk_mb', 'DEFAULT scheduler_max_attempts', 'api listen', 'api port',
      'filter_scheduler enabled_filters', 'libvirt virt_type', 'libvirt cpu_mode', 'libvirt cpu_model',
      'libvirt cpu_model_extra_flags', 'libvirt images_type', 'libvirt hw_machine_type',
      'DEFAULT rpc_response_timeout', 'DEFAULT default_availability_zone',
      'oslo_messaging_rabbit heartbeat_timeout_threshold', 'oslo_messaging_rabbit rabbit_quorum_queue',
    ]);
    const assignments = text
      .split('\n')
      .map((line, i) => ({ line, n: i + 1 }))
      .filter(({ line }) => /^[a-z_]+ *[=:]/.test(line));
    let section = '';
    const expected: { file: string; line: number; section: string; option: string }[] = [];
    for (const { line, n } of text.split('\n').map((line, i) => ({ line, n: i + 1 }))) {
      const header = /^\[(.+)\]$/.exec(line);
      if (header) section = header[1]!;
      const assignment = /^([a-z_]+) *[=:]/.exec(line);
      if (assignment && !known.has(`${section} ${assignment[1]}`)) {
        expected.push({ file: NOVA_CONF, line: n, section, option: assignment[1]! });
      }
    }
    expect(ignored).toEqual(expected);
    expect(ignored.length).toBe(assignments.length - known.size);
    expect(ignored.length).toBeGreaterThan(90);
    expect(ignored).toContainEqual({ ...at('my_ip = 10.20.0.31'), section: 'DEFAULT', option: 'my_ip' });
    expect(ignored).toContainEqual({ ...at('server_listen = $my_ip'), section: 'vnc', option: 'server_listen' });
    const sections = new Set(ignored.map((i) => i.section));
    for (const s of ['database', 'api_database', 'keystone_authtoken', 'neutron', 'placement', 'glance', 'vnc', 'oslo_concurrency']) {
      expect(sections.has(s), s).toBe(true);
    }
  });
});

describe('several --config-file', () => {
  it('later files win, option by option; files are listed in order', () => {
    const a = writeConf('[DEFAULT]\nreport_interval = 5\nservice_down_time = 30\n[libvirt]\nvirt_type = qemu\n');
    const b = writeConf('[DEFAULT]\nreport_interval = 7\n');
    const loaded = loadConfig({ configFiles: [a, b] });
    expect(loaded.values.DEFAULT.report_interval).toBe(7);
    expect(loaded.sources.DEFAULT.report_interval).toEqual({ file: b, line: 2 });
    expect(loaded.values.DEFAULT.service_down_time).toBe(30);
    expect(loaded.sources.DEFAULT.service_down_time).toEqual({ file: a, line: 3 });
    expect(loaded.values.libvirt.virt_type).toBe('qemu');
    expect(loaded.files).toEqual([a, b]);
  });

  it('within a file the last assignment wins', () => {
    const loaded = parseConfigText('[DEFAULT]\ndebug = true\ndebug = false\n[DEFAULT]\ndebug = yes\n', '/x.conf');
    expect(loaded.values.DEFAULT.debug).toBe(true);
    expect(loaded.sources.DEFAULT.debug).toEqual({ file: '/x.conf', line: 5 });
  });

  it('a deprecated name loses to the new name in the same file, wherever it is', () => {
    const loaded = parseConfigText(
      '[libvirt]\ncpu_mode = custom\ncpu_models = Haswell\ncpu_model = Nehalem\n',
      '/x.conf',
    );
    expect(loaded.values.libvirt.cpu_models).toEqual(['Haswell']);
    expect(loaded.deprecated).toEqual([
      {
        file: '/x.conf',
        line: 4,
        section: 'libvirt',
        usedName: 'cpu_model',
        name: 'cpu_models',
        newSection: 'libvirt',
        effective: false,
      },
    ]);
  });

  it('a deprecated name in a later file wins over the new name in an earlier one (as oslo.config)', () => {
    const loaded = loadConfigFromSources([
      { file: '/a.conf', text: '[libvirt]\ncpu_mode = custom\ncpu_models = Haswell\n' },
      { file: '/b.conf', text: '[libvirt]\ncpu_model = Nehalem\n' },
    ]);
    expect(loaded.values.libvirt.cpu_models).toEqual(['Nehalem']);
    expect(loaded.sources.libvirt.cpu_models).toEqual({ file: '/b.conf', line: 2 });
  });

  it('section names are case-insensitive except DEFAULT, as oslo normalises them', () => {
    const loaded = parseConfigText('[LIBVIRT]\nvirt_type = qemu\n[default]\ndebug = true\n', '/x.conf');
    expect(loaded.values.libvirt.virt_type).toBe('qemu');
    expect(loaded.values.DEFAULT.debug).toBe(false);
    expect(loaded.ignored).toEqual([{ file: '/x.conf', line: 4, section: 'default', option: 'debug' }]);
  });
});

describe('--config-dir', () => {
  it('reads every *.conf in sorted order, after the files, later winning', () => {
    const dir = path.join(work, 'nova.conf.d');
    mkdirSync(dir);
    const main = writeConf('[DEFAULT]\nreport_interval = 1\nservice_down_time = 100\nreserved_host_disk_mb = 1\n');
    const second = writeConf('[DEFAULT]\nreport_interval = 3\n', '20-second.conf', dir);
    const first = writeConf('[DEFAULT]\nreport_interval = 2\nservice_down_time = 200\n', '10-first.conf', dir);
    writeConf('[DEFAULT]\nreport_interval = 99\n', 'README', dir);
    writeConf('[DEFAULT]\nreport_interval = 98\n', '.hidden.conf', dir);
    writeConf('[DEFAULT]\nreport_interval = 97\n', '30-disabled.conf.orig', dir);
    const loaded = loadConfig({ configFiles: [main], configDirs: [dir] });
    expect(loaded.files).toEqual([main, first, second]);
    expect(loaded.values.DEFAULT.report_interval).toBe(3);
    expect(loaded.sources.DEFAULT.report_interval).toEqual({ file: second, line: 2 });
    expect(loaded.values.DEFAULT.service_down_time).toBe(200);
    expect(loaded.values.DEFAULT.reserved_host_disk_mb).toBe(1);
  });

  it('an empty directory adds nothing; a directory alone is enough', () => {
    const dir = path.join(work, 'empty.d');
    mkdirSync(dir);
    const loaded = loadConfig({ configDirs: [dir] });
    expect(loaded.files).toEqual([]);
    expect(loaded.values.DEFAULT.report_interval).toBe(10);
  });

  it('a missing directory is an error naming it', () => {
    const dir = path.join(work, 'no-such.d');
    expect(() => loadConfig({ configDirs: [dir] })).toThrow(
      `${dir}: the configuration directory does not exist. Check the --config-dir path.`,
    );
  });

  it('a dangling *.conf link in the directory is a missing file', () => {
    const dir = path.join(work, 'dangling.d');
    mkdirSync(dir);
    symlinkSync(path.join(work, 'gone.conf'), path.join(dir, 'a.conf'));
    expect(() => loadConfig({ configDirs: [dir] })).toThrow(
      `${path.join(dir, 'a.conf')}: the configuration file does not exist. Check the --config-file path.`,
    );
  });
});

describe('defaults', () => {
  it('with no file and no directory, /etc/novalet/novalet.conf is read when it exists, else all defaults', () => {
    for (const loaded of [loadConfig(), loadConfig({ configFiles: [], configDirs: [] })]) {
      expect(loaded.files).toEqual(existsSync(DEFAULT_CONFIG_FILE) ? [DEFAULT_CONFIG_FILE] : []);
      if (loaded.files.length === 0) expect(loaded.values.DEFAULT.state_path).toBe('/var/lib/novalet');
    }
    expect(DEFAULT_CONFIG_FILE).toBe('/etc/novalet/novalet.conf');
  });

  it('an empty file gives every default', () => {
    const loaded = parseConfigText('', '/empty.conf');
    expect(loaded.values.DEFAULT.instances_path).toBe('/var/lib/novalet/instances');
    expect(loaded.values.libvirt.fallback_virt_type).toBe('qemu');
    expect(loaded.ignored).toEqual([]);
    expect(loaded.deprecated).toEqual([]);
  });

  it('an empty value for an unset-able number means unset; an empty string is an empty string', () => {
    const loaded = parseConfigText('[DEFAULT]\ncpu_allocation_ratio =\ntransport_url =\n[libvirt]\nfallback_virt_type =\n', '/x.conf');
    expect(loaded.values.DEFAULT.cpu_allocation_ratio).toBeNull();
    expect(loaded.values.DEFAULT.transport_url).toBe('');
    expect(loaded.values.libvirt.fallback_virt_type).toBe('');
  });
});
