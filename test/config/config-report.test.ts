import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { describeConfig, maskUrlCredentials } from '../../config/config-report.js';
import { maskCredentialsInText, maskSecretValue } from '../../config/mask-credentials.js';
import { loadConfig, parseConfigText } from '../../config/load-config.js';
import { OPTION_DEFINITIONS } from '../../config/option-definitions.js';

const NOVA_CONF = path.resolve(import.meta.dirname, '../fixtures/config/nova-compute-deployment.conf');

describe('maskUrlCredentials', () => {
  it('masks the password of a URL and nothing else', () => {
    expect(maskUrlCredentials('rabbit://nova:S3cret@rmq1:5672/')).toBe('rabbit://nova:***@rmq1:5672/');
    expect(maskUrlCredentials('rabbit://nova:S3cret@rmq1:5672/vhost?ssl=1')).toBe('rabbit://nova:***@rmq1:5672/vhost?ssl=1');
    expect(maskUrlCredentials('mysql+pymysql://nova:pw@db/nova?charset=utf8')).toBe('mysql+pymysql://nova:***@db/nova?charset=utf8');
  });

  it('masks every host of a multi-host transport URL', () => {
    expect(maskUrlCredentials('rabbit://a:p1@h1:5672,b:p2@h2:5672,c:p3@h3:5672//')).toBe(
      'rabbit://a:***@h1:5672,b:***@h2:5672,c:***@h3:5672//',
    );
  });

  it('never leaks a password that contains @, /, : or ,', () => {
    const cases = [
      'rabbit://nova:p@ss@rmq1:5672/',
      'rabbit://nova:pa/ss@rmq1:5672/',
      'rabbit://nova:pa:ss@rmq1:5672/',
      'rabbit://nova:pa,ss@rmq1:5672/',
      'rabbit://a:x@y@h1,b:p/q@h2/',
    ];
    for (const url of cases) {
      const masked = maskUrlCredentials(url);
      for (const secret of ['p@ss', 'ss@', 'pa/ss', 'pa:ss', 'pa,ss', 'x@y', 'p/q']) expect(masked, url).not.toContain(secret);
      expect(masked).toContain('***');
    }
    expect(maskUrlCredentials('rabbit://nova:p@ss@rmq1:5672/')).toBe('rabbit://nova:***@rmq1:5672/');
  });

  it('leaves URLs without a password, and other text, unchanged', () => {
    expect(maskUrlCredentials('rabbit://guest@localhost/')).toBe('rabbit://guest@localhost/');
    expect(maskUrlCredentials('http://keystone:5000/v3')).toBe('http://keystone:5000/v3');
    expect(maskUrlCredentials('qemu:///system')).toBe('qemu:///system');
    expect(maskUrlCredentials('not a url: a:b@c')).toBe('not a url: a:b@c');
  });
});

describe('describeConfig', () => {
  const loaded = loadConfig({ configFiles: [NOVA_CONF] });

  it('lists every option with its value and source', () => {
    const report = describeConfig(loaded);
    expect(Object.keys(report)).toEqual(['DEFAULT', 'libvirt', 'scheduler', 'filter_scheduler', 'api', 'compute', 'import_filtering_opts', 'oslo_messaging_rabbit']);
    for (const def of OPTION_DEFINITIONS) expect(report[def.section][def.name], def.name).toBeDefined();
    expect(report.libvirt.virt_type).toEqual({ value: 'qemu', source: `${NOVA_CONF}:104` });
    expect(report.libvirt.cpu_models).toEqual({ value: ['Nehalem'], source: `${NOVA_CONF}:107` });
    expect(report.libvirt.connection_uri).toEqual({ value: '', source: 'default' });
    expect(report.DEFAULT.instances_path).toEqual({ value: '/var/lib/nova/instances', source: `${NOVA_CONF}:9` });
    expect(report.DEFAULT.initial_cpu_allocation_ratio).toEqual({ value: 4, source: 'default' });
  });

  it('masks the transport_url password unless secrets are asked for', () => {
    const masked = describeConfig(loaded).DEFAULT.transport_url;
    expect(masked).toEqual({
      value:
        'rabbit://nova:***@rmq1.cloud.example.net:5672,nova:***@rmq2.cloud.example.net:5672,nova:***@rmq3.cloud.example.net:5672/',
      source: `${NOVA_CONF}:15`,
    });
    expect(JSON.stringify(describeConfig(loaded))).not.toContain('Zq8s');
    expect(describeConfig(loaded, { showSecrets: true }).DEFAULT.transport_url!.value).toBe(loaded.values.DEFAULT.transport_url);
  });

  it('masks a secret that is not a URL entirely, and leaves an unset one null', () => {
    const token = parseConfigText('[DEFAULT]\ntransport_url = just-a-token\n', '/x.conf');
    expect(describeConfig(token).DEFAULT.transport_url).toEqual({ value: '***', source: '/x.conf:2' });
    expect(describeConfig(parseConfigText('', '/x.conf')).DEFAULT.transport_url).toEqual({ value: null, source: 'default' });
  });
});

describe('describeConfig and secrets taken through substitution', () => {
  it('masks whole a value that took text from a secret option, unless showSecrets', () => {
    const loaded = parseConfigText(
      '[DEFAULT]\ntransport_url = rabbit://admin:Hunter2pw@rmq1:5672/\nhost = $transport_url\n[libvirt]\ncpu_mode = custom\ncpu_models = Nehalem,$transport_url\n',
      '/etc/nova/nova.conf',
    );
    const report = describeConfig(loaded);
    expect(report.DEFAULT.host).toEqual({ value: '***', source: '/etc/nova/nova.conf:3' });
    expect(report.DEFAULT.transport_url?.value).toBe('rabbit://admin:***@rmq1:5672/');
    expect(report.libvirt.cpu_models?.value).toEqual(['***', '***']);
    expect(JSON.stringify(report)).not.toContain('Hunter2pw');
    expect(describeConfig(loaded, { showSecrets: true }).DEFAULT.host?.value).toBe('rabbit://admin:Hunter2pw@rmq1:5672/');
  });
});

describe('masking what does not read as a URL (found by the fuzz test)', () => {
  it('a secret URL whose authority is malformed is masked whole, past its scheme', () => {
    // ':' mistyped as '!': the password sits where a user should be.
    expect(maskSecretValue('rabbit://nova:pw1@rmq1:5672,nova!Hunter2pw@rmq2:5672/')).toBe('rabbit://***');
    // A host list cut short: the last password has no '@' after it.
    expect(maskSecretValue('rabbit://nova:pw1@rmq1:5672,nova:Hunter2pw')).toBe('rabbit://***');
    // Well-formed ones keep their hosts.
    expect(maskSecretValue('rabbit://a:p1@h1:5672,b:p2@h2:5672/vhost')).toBe('rabbit://a:***@h1:5672,b:***@h2:5672/vhost');
    expect(maskSecretValue('rabbit://guest@[::1]:5672/')).toBe('rabbit://guest@[::1]:5672/');
  });

  it('a URL password inside other text is masked, in reports and in errors', () => {
    expect(maskCredentialsInText("10\ntransport_url = rabbit://nova:Hunter2pw@rmq1/ and 'qemu+ssh://u:pw2@h/system'")).toBe(
      "10\ntransport_url = rabbit://nova:***@rmq1/ and 'qemu+ssh://u:***@h/system'",
    );
    const loaded = parseConfigText('[libvirt]\nconnection_uri = qemu+ssh://root:Hunter2pw@kvm1/system\n', '/n.conf');
    expect(describeConfig(loaded).libvirt.connection_uri?.value).toBe('qemu+ssh://root:***@kvm1/system');
    // A stray indent joins the transport_url line to report_interval's value.
    expect(() => parseConfigText('[DEFAULT]\nreport_interval = 10\n  transport_url = rabbit://nova:Hunter2pw@rmq1/\n', '/n.conf')).toThrow(
      "/n.conf:2: [DEFAULT] report_interval = '10\\ntransport_url = rabbit://nova:***@rmq1/' is not an integer",
    );
  });
});
