import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig, parseConfigText } from '../../config/load-config.js';
import { OPTION_DEFINITIONS } from '../../config/option-definitions.js';
import { renderSampleConfig } from '../../config/sample-config.js';

const SAMPLE = path.resolve(import.meta.dirname, '../../etc/novalet.conf.sample');

// Regenerate with: UPDATE_SAMPLE=1 npx vitest run test/config/sample-config.test.ts
if (process.env.UPDATE_SAMPLE === '1') writeFileSync(SAMPLE, renderSampleConfig());

const DEFAULTS = {
  DEFAULT: {
    host: hostname(),
    state_path: '/var/lib/novalet',
    instances_path: '/var/lib/novalet/instances',
    transport_url: null,
    report_interval: 10,
    service_down_time: 60,
    cpu_allocation_ratio: null,
    ram_allocation_ratio: null,
    disk_allocation_ratio: null,
    initial_cpu_allocation_ratio: 4.0,
    initial_ram_allocation_ratio: 1.0,
    initial_disk_allocation_ratio: 1.0,
    reserved_host_memory_mb: 512,
    reserved_host_disk_mb: 0,
    image_download_idle_timeout: 60,
    image_download_timeout: 3600,
    image_download_max_size_mb: 1048576,
    image_download_min_rate: 1024,
    image_download_min_rate_window: 60,
    debug: false,
    rpc_response_timeout: 60,
    max_concurrent_builds: 10,
    shutdown_timeout: 60,
    graceful_shutdown_timeout: 60,
    default_availability_zone: 'nova',
  },
  libvirt: {
    virt_type: 'kvm',
    connection_uri: '',
    cpu_mode: null,
    cpu_models: [],
    cpu_model_extra_flags: [],
    hw_machine_type: null,
    images_type: 'default',
    fallback_virt_type: 'qemu',
    kvm_selftest_guest_dir: '/var/lib/novalet/test-guest',
    kvm_selftest_timeout: 20,
    wait_soft_reboot_seconds: 120,
  },
  scheduler: { max_attempts: 3 },
  filter_scheduler: {
    enabled_filters: [
      'ComputeFilter',
      'ComputeCapabilitiesFilter',
      'ImagePropertiesFilter',
      'ServerGroupAntiAffinityFilter',
      'ServerGroupAffinityFilter',
    ],
  },
  api: { listen: '127.0.0.1', port: 8789, auth: 'token', auth_token_file: '/var/lib/novalet/api-token' },
  compute: { availability_zone: null, aggregates: [], image_dir: '/var/lib/novalet/images', deleted_record_retention: 86400 },
  import_filtering_opts: { allowed_schemes: ['http', 'https'], disallowed_schemes: [], allowed_hosts: [], disallowed_hosts: [], allowed_ports: [80, 443], disallowed_ports: [] },
  oslo_messaging_rabbit: {
    heartbeat_timeout_threshold: 60,
    rabbit_retry_interval: 1,
    rabbit_retry_backoff: 2,
    rabbit_interval_max: 30,
    rabbit_qos_prefetch_count: 0,
    rabbit_quorum_queue: false,
    ssl: false,
    ssl_ca_file: '',
    ssl_cert_file: '',
    ssl_key_file: '',
    max_message_size: 1048576,
    dead_letter_max_length: 10000,
  },
};

describe('etc/novalet.conf.sample', () => {
  it('is exactly what renderSampleConfig() produces (regenerate with UPDATE_SAMPLE=1)', () => {
    expect(existsSync(SAMPLE), `${SAMPLE} is missing; run with UPDATE_SAMPLE=1`).toBe(true);
    expect(readFileSync(SAMPLE, 'utf8')).toBe(renderSampleConfig());
  });

  it('loads and gives every default, all from "default"', () => {
    const loaded = loadConfig({ configFiles: [SAMPLE] });
    expect(loaded.values).toEqual(DEFAULTS);
    expect(loaded.files).toEqual([SAMPLE]);
    expect(loaded.ignored).toEqual([]);
    for (const def of OPTION_DEFINITIONS) expect(loaded.sources[def.section][def.name]).toBe('default');
  });

  it('gives the same values with every shown default uncommented', () => {
    const uncommented = renderSampleConfig()
      .split('\n')
      .map((line) => {
        const m = /^#([a-z_]+) =(?: (.*))?$/.exec(line);
        if (!m || m[2] === '<None>' || m[2] === '<hostname>') return line;
        return line.slice(1);
      })
      .join('\n');
    const loaded = parseConfigText(uncommented, '/etc/novalet/uncommented.conf');
    const setInFile = OPTION_DEFINITIONS.filter((d) => loaded.sources[d.section][d.name] !== 'default');
    // Everything but the <None> defaults and <hostname> is set in the file now.
    expect(setInFile.length).toBe(OPTION_DEFINITIONS.length - 8);
    // instances_path is written as $state_path/instances and substituted.
    expect(loaded.values).toEqual(DEFAULTS);
  });

  it('documents every option with help wrapped at 70 columns, in oslo-config-generator style', () => {
    const text = renderSampleConfig();
    const lines = text.split('\n');
    for (const line of lines) {
      if (/^#[a-z_]+ =/.test(line)) continue; // defaults are not wrapped
      if (line.startsWith('# ') && !line.slice(2).includes(' ')) continue; // a single long word may overflow
      expect(line.length, line).toBeLessThanOrEqual(70);
    }
    for (const def of OPTION_DEFINITIONS) {
      expect(lines.some((l) => l === `#${def.name} =` || l.startsWith(`#${def.name} = `)), def.name).toBe(true);
    }
    expect(text).toContain('[DEFAULT]\n\n#\n# Hostname, FQDN or IP address of this host.');
    expect(text).toContain('#host = <hostname>\n');
    expect(text).not.toContain(`= ${hostname()}\n`);
    expect(text).toContain(
      '#  (integer value)\n# Minimum value: 1\n# Deprecated Variations:\n' +
        '# Deprecated group/name - [DEFAULT]/scheduler_max_attempts\n#max_attempts = 3\n',
    );
    expect(text).toContain('# Minimum value: 0.0\n#initial_cpu_allocation_ratio = 4.0\n');
    expect(text).toContain('# Minimum value: 1\n# Maximum value: 65535\n# This option is novalet\'s own.\n#port = 8789\n');
    expect(text).toContain(
      '# Possible values:\n# kvm - <No description provided>\n# lxc - <No description provided>\n' +
        '# qemu - <No description provided>\n# parallels - <No description provided>\n#virt_type = kvm\n',
    );
    expect(text).toContain("# '' - No fallback");
    expect(text).toContain('# Deprecated Variations:\n# Deprecated group/name - [libvirt]/cpu_model\n#cpu_models =\n');
    expect(text).toContain('#cpu_mode = <None>\n');
    expect(text).toContain(
      '#enabled_filters = ComputeFilter,ComputeCapabilitiesFilter,ImagePropertiesFilter,ServerGroupAntiAffinityFilter,ServerGroupAffinityFilter\n',
    );
    expect(text).toContain('#instances_path = $state_path/instances\n');
    expect(text).toMatch(/\$pybasedir/); // state_path's help says why nova's default does not apply
    const sections = lines.filter((l) => l.startsWith('['));
    expect(sections).toEqual(['[DEFAULT]', '[api]', '[compute]', '[filter_scheduler]', '[import_filtering_opts]', '[libvirt]', '[oslo_messaging_rabbit]', '[scheduler]']);
  });
});
