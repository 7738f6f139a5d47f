import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../config/config-error.js';
import { loadConfigFromSources, parseConfigText } from '../../config/load-config.js';
import { parseTemplate } from '../../config/substitution.js';

const load = (text: string) => parseConfigText(text, '/etc/nova/nova.conf');
function substitutionError(text: string): ConfigError {
  try {
    load(text);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).code).toBe('CONFIG_SUBSTITUTION');
    return err as ConfigError;
  }
  throw new Error('no error');
}

describe('$ substitution, as oslo.config', () => {
  it('$state_path in a value, and in the default of instances_path', () => {
    const loaded = load('[DEFAULT]\nstate_path = /srv/novalet\n[libvirt]\nconnection_uri = qemu:///embed?root=$state_path/libvirt\n');
    expect(loaded.values.DEFAULT.instances_path).toBe('/srv/novalet/instances');
    expect(loaded.sources.DEFAULT.instances_path).toBe('default');
    // Undotted names fall back from the option's own section to [DEFAULT].
    expect(loaded.values.libvirt.connection_uri).toBe('qemu:///embed?root=/srv/novalet/libvirt');
  });

  it('${name} and ${section.option}, dotted or braced', () => {
    const loaded = load(
      '[DEFAULT]\nstate_path = /srv\ninstances_path = ${state_path}/vms\nhost = ${libvirt.virt_type}-$DEFAULT.debug\n[libvirt]\nvirt_type = qemu\nconnection_uri = ${DEFAULT.state_path}/x\n',
    );
    expect(loaded.values.DEFAULT.instances_path).toBe('/srv/vms');
    expect(loaded.values.libvirt.connection_uri).toBe('/srv/x');
    expect(loaded.values.DEFAULT.host).toBe('qemu-false');
  });

  it('the own section first, then [DEFAULT]', () => {
    const loaded = load('[DEFAULT]\nname = from-default\nhost = $name\n[api]\nname = from-api\nlisten = $name\n');
    expect(loaded.values.DEFAULT.host).toBe('from-default');
    expect(loaded.values.api.listen).toBe('from-api');
  });

  it('$$ and \\$ are a literal $; a $ without a name stays', () => {
    const loaded = load('[DEFAULT]\nhost = a$$b\nstate_path = /p\\$state_path\n[api]\nlisten = cost: 5$ or $1 or ${x\n');
    expect(loaded.values.DEFAULT.host).toBe('a$b');
    expect(loaded.values.DEFAULT.state_path).toBe('/p$state_path');
    expect(loaded.values.api.listen).toBe('cost: 5$ or $1 or ${x');
  });

  it('an option novalet does not know gives its raw value ($my_ip), itself substituted', () => {
    const loaded = load('[DEFAULT]\nmy_ip = 10.0.0.$last\nlast = 5\n[api]\nlisten = $my_ip\n');
    expect(loaded.values.api.listen).toBe('10.0.0.5');
    expect(loaded.sources.api.listen).toEqual({ file: '/etc/nova/nova.conf', line: 5 });
    expect(loaded.settings.api.listen).toMatchObject({ raw: '$my_ip', text: '10.0.0.5' });
  });

  it('raw values come from the newest file that sets them', () => {
    const loaded = loadConfigFromSources([
      { file: '/a.conf', text: '[DEFAULT]\nmy_ip = 10.0.0.1\n[api]\nlisten = $my_ip\n' },
      { file: '/b.conf', text: '[DEFAULT]\nmy_ip = 10.0.0.2\n' },
    ]);
    expect(loaded.values.api.listen).toBe('10.0.0.2');
  });

  it('known options give their typed value as text: numbers, booleans, lists', () => {
    const loaded = load(
      '[DEFAULT]\nreport_interval = 0015\nhost = n$report_interval-$debug\n[libvirt]\ncpu_mode = custom\ncpu_models = A, B\nconnection_uri = $cpu_models\n',
    );
    expect(loaded.values.DEFAULT.host).toBe('n15-false');
    expect(loaded.values.libvirt.connection_uri).toBe('A,B');
  });

  it('a substituted list is split after substitution', () => {
    const loaded = load('[DEFAULT]\nmy_filters = ComputeFilter, ImagePropertiesFilter\n[filter_scheduler]\nenabled_filters = $my_filters,RetryFilter\n');
    expect(loaded.values.filter_scheduler.enabled_filters).toEqual(['ComputeFilter', 'ImagePropertiesFilter', 'RetryFilter']);
  });

  it('an unresolvable reference names the file and line', () => {
    const e = substitutionError('[DEFAULT]\n\n[vnc]\nx = 1\n[api]\nlisten = $my_ipp\n');
    expect(e.message).toBe(
      "/etc/nova/nova.conf:6: [api] listen = '$my_ipp' refers to $my_ipp, which is set nowhere: there is no option my_ipp in [api] or [DEFAULT]. Set it, or write $$ for a literal '$'.",
    );
    expect(e).toMatchObject({ file: '/etc/nova/nova.conf', line: 6, section: 'api', option: 'listen' });
    expect(substitutionError('[DEFAULT]\nhost = ${neutron.url}\n').message).toBe(
      "/etc/nova/nova.conf:2: [DEFAULT] host = '${neutron.url}' refers to ${neutron.url}, which is set nowhere: there is no option url in [neutron]. Set it, or write $$ for a literal '$'.",
    );
  });

  it('an unresolvable reference inside an unknown option names that option', () => {
    expect(substitutionError('[DEFAULT]\nmy_ip = $nothing\nhost = $my_ip\n').message).toBe(
      "/etc/nova/nova.conf:2: [DEFAULT] my_ip = '$nothing' refers to $nothing, which is set nowhere: there is no option nothing in [DEFAULT]. Set it, or write $$ for a literal '$'.",
    );
  });

  it('a reference to an unset option is an error', () => {
    expect(substitutionError('[DEFAULT]\nhost = $transport_url\n').message).toBe(
      "/etc/nova/nova.conf:2: [DEFAULT] host = '$transport_url' refers to $transport_url, which is unset ([DEFAULT] transport_url has no value). Set [DEFAULT] transport_url, or write $$ for a literal '$'.",
    );
  });

  it('a cycle is an error naming the chain', () => {
    expect(substitutionError('[DEFAULT]\nstate_path = $host\nhost = ${state_path}\n').message).toBe(
      "/etc/nova/nova.conf:3: [DEFAULT] host = '${state_path}' refers back to itself: [DEFAULT] host → [DEFAULT] state_path → [DEFAULT] host. Break the cycle, or write $$ for a literal '$'.",
    );
    expect(substitutionError('[DEFAULT]\nhost = $host\n').message).toContain(
      'refers back to itself: [DEFAULT] host → [DEFAULT] host.',
    );
    // Through the default of instances_path: the blame goes to the line in the file.
    expect(substitutionError('[DEFAULT]\n\nstate_path = $instances_path/..\n').message).toBe(
      "/etc/nova/nova.conf:3: [DEFAULT] state_path = '$instances_path/..' refers back to itself: [DEFAULT] state_path → [DEFAULT] instances_path → [DEFAULT] state_path. Break the cycle, or write $$ for a literal '$'.",
    );
    // Through options novalet does not know.
    expect(substitutionError('[DEFAULT]\na = $b\nb = $a\nhost = $a\n').message).toContain(
      'refers back to itself: [DEFAULT] a → [DEFAULT] b → [DEFAULT] a.',
    );
  });

  it('references nested too deeply are an error, not a stack overflow', () => {
    const chain = Array.from({ length: 200 }, (_, i) => `v${i} = $v${i + 1}`).join('\n');
    const e = substitutionError(`[DEFAULT]\n${chain}\nv200 = end\nhost = $v0\n`);
    expect(e.message).toMatch(/^\/etc\/nova\/nova\.conf:\d+: \[DEFAULT\] v\d+ = '\$v\d+' nests references more than 32 deep\./);
  });
});

describe('the size of what substitution produces is bounded', () => {
  function tooLarge(text: string): ConfigError {
    const started = Date.now();
    try {
      load(text);
    } catch (err) {
      expect(Date.now() - started).toBeLessThan(1000);
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).code).toBe('CONFIG_SUBSTITUTION_TOO_LARGE');
      expect((err as ConfigError).message).not.toContain('\n');
      return err as ConfigError;
    }
    throw new Error('no error');
  }

  it('values that double the one before fail fast at the first past 64 KiB, naming it (it took 116 s and 2.5 GB)', () => {
    const doubling = Array.from({ length: 25 }, (_, i) => `v${i + 2} = $v${i + 1}$v${i + 1}`).join('\n');
    const e = tooLarge(`[DEFAULT]\nv1 = x\n${doubling}\nhost = $v26$v26\n`);
    // v17 is 2^16 characters, exactly 64 KiB; v18 is the first past it, on line 19.
    expect(e.message).toBe(
      "/etc/nova/nova.conf:19: [DEFAULT] v18 = '$v17$v17' expands to more than 64 KiB of text once its references are substituted. Refer to shorter values: no option needs that much text.",
    );
    expect(e).toMatchObject({ file: '/etc/nova/nova.conf', line: 19, option: 'v18' });
  });

  it('one value referring to a large one many times fails too', () => {
    const e = tooLarge(`[DEFAULT]\nbig = ${'x'.repeat(40_000)}\nhost = $big$big\n`);
    expect(e.message).toMatch(/^\/etc\/nova\/nova\.conf:3: \[DEFAULT\] host = '\$big\$big' expands to more than 64 KiB/);
  });

  it('and so do values each within the bound that together pass 1 MiB', () => {
    // d0 = $d1, …, d19 = $big: each 60 000 characters, 1.2 MB in all; d19 … d2 are the first 18 to complete.
    const chain = Array.from({ length: 19 }, (_, i) => `d${i} = $d${i + 1}`).join('\n');
    const e = tooLarge(`[DEFAULT]\nbig = ${'x'.repeat(60_000)}\n${chain}\nd19 = $big\nhost = $d0\n`);
    expect(e.message).toBe(
      "/etc/nova/nova.conf:5: [DEFAULT] d2 = '$d3' takes the text that substitution produces past 1 MiB for the whole configuration. Refer to shorter values: no option needs that much text.",
    );
  });

  it('an option novalet does not know is expanded once, however often it is referred to', () => {
    // Empty at the bottom, so the result is small; expanded at every reference this was 2^20 expansions (6 s).
    const levels = Array.from({ length: 20 }, (_, i) => `e${i} = $e${i + 1}$e${i + 1}`).join('\n');
    const started = Date.now();
    const loaded = load(`[DEFAULT]\n${levels}\ne20 =\nhost = x$e0\n`);
    expect(loaded.values.DEFAULT.host).toBe('x');
    expect(Date.now() - started).toBeLessThan(1000);
  });
});

describe('a secret stays secret through substitution', () => {
  const TRANSPORT = '[DEFAULT]\ntransport_url = rabbit://admin:Hunter2pw@rmq1:5672/\n';
  function anyError(text: string): ConfigError {
    try {
      load(text);
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      return err as ConfigError;
    }
    throw new Error('no error');
  }

  it('an error about a value that took text from transport_url quotes it as written, never expanded', () => {
    const e = anyError(`${TRANSPORT}report_interval = $transport_url\n`);
    expect(e.message).toBe(
      "/etc/nova/nova.conf:3: [DEFAULT] report_interval = '$transport_url' (after substitution, which takes text from a secret option) is not an integer; use an integer.",
    );
    expect(e.message).not.toContain('Hunter2pw');
    // Through an option novalet does not know, and through a dotted reference.
    expect(anyError(`${TRANSPORT}relay = x$transport_url\nservice_down_time = $relay\n`).message).not.toContain('Hunter2pw');
    expect(anyError(`${TRANSPORT}[api]\nport = \${DEFAULT.transport_url}\n`).message).not.toContain('Hunter2pw');
    // The CPU flag rule quotes the flag it refuses, unless its text is secret.
    const flags = anyError(`${TRANSPORT}[libvirt]\ncpu_model_extra_flags = pcid,$transport_url\n`);
    expect(flags.code).toBe('CONFIG_CPU_RULE');
    expect(flags.message).toContain('entry 2 is not a CPU flag (its text comes from a secret option).');
    expect(flags.message).not.toContain('Hunter2pw');
  });

  it('a value that took text from a secret is secret itself, its default included; others are not', () => {
    const loaded = load(`${TRANSPORT}host = $transport_url\nstate_path = /srv/\${transport_url}\n[api]\nlisten = $my_ip\nmy_ip = 10.0.0.1\n`);
    expect(loaded.values.DEFAULT.host).toBe('rabbit://admin:Hunter2pw@rmq1:5672/');
    expect(loaded.secret.DEFAULT).toMatchObject({ transport_url: true, host: true, state_path: true, instances_path: true, debug: false });
    expect(loaded.secret.api.listen).toBe(false);
    expect(loaded.settings.DEFAULT.host?.secret).toBe(true);
    expect(loaded.settings.api.listen?.secret).toBe(false);
    // Secret while unset: transport_url is secret in itself.
    expect(load('[DEFAULT]\n').secret.DEFAULT.transport_url).toBe(true);
  });

  it("options novalet does not know are secret by their names, as oslo's secret options are named, or by a password in a URL", () => {
    const loaded = load(
      '[DEFAULT]\nhost = ${keystone_authtoken.password}\ninstances_path = /srv/$database.connection\nstate_path = /srv/$rabbit_host\nrabbit_host = rmq1\n' +
        '[keystone_authtoken]\npassword = Hunter2pw\n[database]\nconnection = mysql://nova:Hunter2pw@db/nova\n',
    );
    expect(loaded.secret.DEFAULT).toMatchObject({ host: true, instances_path: true, state_path: false });
    // An error inside such an option masks its value.
    const e = anyError('[DEFAULT]\nhost = $metadata_proxy_shared_secret\nmetadata_proxy_shared_secret = Hunter2pw$nothing\n');
    expect(e.message).toBe(
      "/etc/nova/nova.conf:3: [DEFAULT] metadata_proxy_shared_secret = '***' refers to $nothing, which is set nowhere: there is no option nothing in [DEFAULT]. Set it, or write $$ for a literal '$'.",
    );
  });
});

describe('parseTemplate', () => {
  it("splits a value as string.Template does with oslo's idpattern", () => {
    expect(parseTemplate('a$b.c-${D.e}$$f\\$g$')).toEqual([
      { literal: 'a' },
      { reference: { section: 'b', name: 'c', text: '$b.c' } },
      { literal: '-' },
      { reference: { section: 'd', name: 'e', text: '${D.e}' } },
      { literal: '$f$g$' },
    ]);
  });
});
