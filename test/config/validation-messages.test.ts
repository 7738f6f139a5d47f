import { mkdirSync, mkdtempSync, rmSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../config/config-error.js';
import { loadConfig, parseConfigText } from '../../config/load-config.js';

/** The ConfigError loading `text` as `file` throws (fails the test when none is thrown). */
function errorFor(text: string | Uint8Array, file = '/etc/nova/nova.conf'): ConfigError {
  try {
    parseConfigText(text, file);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    const e = err as ConfigError;
    expect(e.message).not.toContain('\n');
    return e;
  }
  throw new Error(`no error for ${JSON.stringify(text)}`);
}

const message = (text: string | Uint8Array, file?: string): string => errorFor(text, file).message;

describe('invalid values: one line naming file, line, section, option, value and what is allowed', () => {
  it('a choice lists the choices', () => {
    const text = `[DEFAULT]\n${'# padding\n'.repeat(9)}[libvirt]\nvirt_type = kvmm\n`;
    const e = errorFor(text);
    expect(e.message).toBe(
      "/etc/nova/nova.conf:12: [libvirt] virt_type = 'kvmm' is not allowed; choose one of: kvm, lxc, qemu, parallels.",
    );
    expect(e).toMatchObject({
      code: 'CONFIG_INVALID_VALUE',
      file: '/etc/nova/nova.conf',
      line: 12,
      section: 'libvirt',
      option: 'virt_type',
      value: 'kvmm',
    });
  });

  it('choices are exact: case matters, as in oslo.config', () => {
    expect(message('[libvirt]\ncpu_mode = Host-Model\n')).toBe(
      "/etc/nova/nova.conf:2: [libvirt] cpu_mode = 'Host-Model' is not allowed; choose one of: host-model, host-passthrough, custom, none.",
    );
    expect(message('[libvirt]\nfallback_virt_type = kvm\n')).toBe(
      "/etc/nova/nova.conf:2: [libvirt] fallback_virt_type = 'kvm' is not allowed; choose one of: '' (empty), qemu.",
    );
  });

  it('a bad boolean', () => {
    expect(message('[DEFAULT]\ndebug = maybe\n')).toBe(
      "/etc/nova/nova.conf:2: [DEFAULT] debug = 'maybe' is not a boolean; use true or false (also yes/no, on/off, 1/0).",
    );
  });

  it('an integer below its minimum', () => {
    expect(message('[scheduler]\nmax_attempts = 0\n')).toBe(
      "/etc/nova/nova.conf:2: [scheduler] max_attempts = '0' is less than the minimum 1; use an integer ≥ 1.",
    );
    expect(message('[DEFAULT]\nreserved_host_memory_mb = -512\n')).toBe(
      "/etc/nova/nova.conf:2: [DEFAULT] reserved_host_memory_mb = '-512' is less than the minimum 0; use an integer ≥ 0.",
    );
  });

  it('not an integer, too large an integer, an empty integer', () => {
    expect(message('[DEFAULT]\nreport_interval = 10s\n')).toBe(
      "/etc/nova/nova.conf:2: [DEFAULT] report_interval = '10s' is not an integer; use an integer.",
    );
    expect(message('[DEFAULT]\nreport_interval = 1.5\n')).toBe(
      "/etc/nova/nova.conf:2: [DEFAULT] report_interval = '1.5' is not an integer; use an integer.",
    );
    expect(message('[DEFAULT]\nservice_down_time = 99999999999999999999\n')).toBe(
      "/etc/nova/nova.conf:2: [DEFAULT] service_down_time = '99999999999999999999' is too large; use an integer.",
    );
    expect(message('[DEFAULT]\nreport_interval =\n')).toBe(
      "/etc/nova/nova.conf:2: [DEFAULT] report_interval = '' is empty; use an integer, or remove the line to use the default.",
    );
  });

  it('a bad float, a negative ratio, an infinite one', () => {
    expect(message('[DEFAULT]\ncpu_allocation_ratio = four\n')).toBe(
      "/etc/nova/nova.conf:2: [DEFAULT] cpu_allocation_ratio = 'four' is not a number; use a number ≥ 0, such as 1.5.",
    );
    expect(message('[DEFAULT]\ninitial_ram_allocation_ratio = -1.0\n')).toBe(
      "/etc/nova/nova.conf:2: [DEFAULT] initial_ram_allocation_ratio = '-1.0' is less than the minimum 0; use a number ≥ 0.",
    );
    expect(message('[DEFAULT]\nram_allocation_ratio = inf\n')).toBe(
      "/etc/nova/nova.conf:2: [DEFAULT] ram_allocation_ratio = 'inf' is not a number; use a number ≥ 0, such as 1.5.",
    );
    expect(message('[DEFAULT]\nram_allocation_ratio = 1e999\n')).toBe(
      "/etc/nova/nova.conf:2: [DEFAULT] ram_allocation_ratio = '1e999' is too large; use a number ≥ 0.",
    );
  });

  it('a bad port', () => {
    expect(message('[api]\nlisten = 0.0.0.0\nport = 70000\n')).toBe(
      "/etc/nova/nova.conf:3: [api] port = '70000' is greater than the maximum 65535; use an integer ≥ 1 and ≤ 65535.",
    );
    expect(message('[api]\nport = 0\n')).toBe(
      "/etc/nova/nova.conf:2: [api] port = '0' is less than the minimum 1; use an integer ≥ 1 and ≤ 65535.",
    );
    expect(message('[api]\nport = http\n')).toBe(
      "/etc/nova/nova.conf:2: [api] port = 'http' is not a port number; use an integer ≥ 1 and ≤ 65535.",
    );
  });

  it('a deprecated name is named as written', () => {
    expect(message('[DEFAULT]\nscheduler_max_attempts = none\n')).toBe(
      "/etc/nova/nova.conf:2: [DEFAULT] scheduler_max_attempts = 'none' is not an integer; use an integer ≥ 1.",
    );
  });

  it('a value made bad by substitution shows what it became', () => {
    expect(message('[DEFAULT]\nmy_interval = often\nreport_interval = $my_interval\n')).toBe(
      "/etc/nova/nova.conf:3: [DEFAULT] report_interval = '$my_interval' (after substitution 'often') is not an integer; use an integer.",
    );
  });

  it('control characters and long values are escaped and shortened, so the message stays one line', () => {
    expect(message('[DEFAULT]\ndebug = "yes\n  no"\n')).toBe(
      "/etc/nova/nova.conf:2: [DEFAULT] debug = '\"yes\\nno\"' is not a boolean; use true or false (also yes/no, on/off, 1/0).",
    );
    const long = 'x'.repeat(5000);
    expect(message(`[DEFAULT]\ndebug = ${long}\n`)).toBe(
      `/etc/nova/nova.conf:2: [DEFAULT] debug = '${'x'.repeat(100)}'… (5000 characters) is not a boolean; use true or false (also yes/no, on/off, 1/0).`,
    );
  });
});

describe("nova's _check_cpu_compatibility rules, with nova's messages", () => {
  it('an explicit CPU model with a virt_type that cannot select one', () => {
    const e = errorFor('[libvirt]\nvirt_type = lxc\ncpu_mode = host-model\n');
    expect(e.message).toBe(
      "/etc/nova/nova.conf:3: [libvirt] cpu_mode = 'host-model': Config requested an explicit CPU model, but the current libvirt hypervisor 'lxc' does not support selecting CPU models. Remove [libvirt] cpu_mode, or set [libvirt] virt_type = kvm or qemu.",
    );
    expect(e.code).toBe('CONFIG_CPU_RULE');
    expect(message('[libvirt]\nvirt_type = parallels\ncpu_mode = custom\ncpu_models = Nehalem\n')).toContain(
      "[libvirt] cpu_mode = 'custom': Config requested an explicit CPU model, but the current libvirt hypervisor 'parallels' does not support selecting CPU models.",
    );
  });

  it('cpu_models without cpu_mode = custom (including cpu_mode unset)', () => {
    expect(message('[libvirt]\ncpu_mode = host-model\ncpu_models = Nehalem,Haswell\n')).toBe(
      "/etc/nova/nova.conf:3: [libvirt] cpu_models = 'Nehalem,Haswell': The cpu_models option is not required when cpu_mode!=custom. Set [libvirt] cpu_mode = custom to use these models, or remove cpu_models.",
    );
    expect(message('[libvirt]\ncpu_model = Nehalem\n')).toBe(
      "/etc/nova/nova.conf:2: [libvirt] cpu_model = 'Nehalem': The cpu_models option is not required when cpu_mode!=custom. Set [libvirt] cpu_mode = custom to use these models, or remove cpu_models.",
    );
  });

  it('cpu_mode = custom without cpu_models', () => {
    const e = errorFor('[libvirt]\nvirt_type = qemu\ncpu_mode = custom\n');
    expect(e.message).toBe(
      "/etc/nova/nova.conf:3: [libvirt] cpu_mode = 'custom': The cpu_models option is required when cpu_mode=custom. Set [libvirt] cpu_models to a CPU model such as Nehalem, or choose another cpu_mode.",
    );
    expect(e).toMatchObject({ code: 'CONFIG_CPU_RULE', line: 3, option: 'cpu_mode', value: 'custom' });
    expect(message('[libvirt]\ncpu_mode = custom\ncpu_models =\n')).toContain(
      'The cpu_models option is required when cpu_mode=custom.',
    );
  });

  it('a bad cpu_model_extra_flags entry is named as written', () => {
    expect(message('[libvirt]\ncpu_model_extra_flags = PCID, vm x, +avx2\n')).toBe(
      "/etc/nova/nova.conf:2: [libvirt] cpu_model_extra_flags = 'PCID, vm x, +avx2': 'vm x' is not a CPU flag. Write each entry as flag, +flag or -flag, where flag is a name such as pcid or avx512f (letters, digits, '_', '.', '-').",
    );
    expect(message('[libvirt]\ncpu_model_extra_flags = +-pcid\n')).toContain("'+-pcid' is not a CPU flag.");
    expect(message('[libvirt]\ncpu_model_extra_flags = pcid,,vmx\n')).toContain("'' is not a CPU flag.");
  });

  it('good extra flags pass, lower-cased as nova does', () => {
    const loaded = parseConfigText('[libvirt]\ncpu_model_extra_flags = PCID, +AVX512F, -vmx, sse4.2, tsc-deadline\n', '/x.conf');
    expect(loaded.values.libvirt.cpu_model_extra_flags).toEqual(['pcid', '+avx512f', '-vmx', 'sse4.2', 'tsc-deadline']);
  });

  it("lxc and parallels are refused by novalet, after nova's rules", () => {
    const e = errorFor('[libvirt]\nvirt_type = lxc\n');
    expect(e.message).toBe(
      "/etc/nova/nova.conf:2: [libvirt] virt_type = 'lxc': novalet runs instances only through libvirt's QEMU driver; set [libvirt] virt_type = kvm or qemu.",
    );
    expect(e.code).toBe('CONFIG_UNSUPPORTED');
    expect(message('[libvirt]\nvirt_type = parallels\ncpu_mode = none\n')).toBe(
      "/etc/nova/nova.conf:2: [libvirt] virt_type = 'parallels': novalet runs instances only through libvirt's QEMU driver; set [libvirt] virt_type = kvm or qemu.",
    );
  });
});

describe('syntax errors name the file and line', () => {
  it('a section header without its closing bracket', () => {
    const e = errorFor('[DEFAULT]\ndebug = true\n[libvirt\nvirt_type = qemu\n');
    expect(e.message).toBe(
      "/etc/nova/nova.conf:3: invalid section header starting '[libvirt': it must end with ']'. Write a section header alone on its line, as in [libvirt].",
    );
    expect(e).toMatchObject({ code: 'CONFIG_PARSE', file: '/etc/nova/nova.conf', line: 3, section: null });
    // No inline comments: the bracket must end the line.
    expect(message('[DEFAULT]\n[libvirt] # hypervisor\n')).toBe(
      "/etc/nova/nova.conf:2: invalid section header starting '[libvirt]': it must end with ']'. Write a section header alone on its line, as in [libvirt].",
    );
    // Before any section header nothing of the line is shown: the file may not be a configuration.
    expect(message('[libvirt] # hypervisor\n')).toBe(
      "/etc/nova/nova.conf:1: invalid section header: it must end with ']'. Write a section header alone on its line, as in [libvirt].",
    );
    // After one, at most its first word, of at most 40 characters: never a value.
    expect(message(`[DEFAULT]\n[${'x'.repeat(60)}\n`)).toContain(`invalid section header starting '[${'x'.repeat(39)}'…: it must end`);
    expect(message('[DEFAULT]\n[transport_url = rabbit://nova:Hunter2pw@rmq1/\n')).toContain("invalid section header starting '[transport_url': it must end");
  });

  it('an empty section name', () => {
    expect(message('[]\n')).toBe("/etc/nova/nova.conf:1: empty section name '[]'. Name the section, as in [libvirt].");
  });

  it('an assignment before any section', () => {
    expect(message('# nova.conf\n\ndebug = true\n[DEFAULT]\n')).toBe(
      '/etc/nova/nova.conf:3: an option is set before any section header, so this does not read as a configuration file. Put a section header such as [DEFAULT] above it, or check that this is the configuration file you meant.',
    );
  });

  it('an unexpected continuation line', () => {
    expect(message('[DEFAULT]\n  debug = true\n')).toBe(
      "/etc/nova/nova.conf:2: unexpected continuation line starting 'debug': a line starting with a space or tab continues the value above it, and there is none. Remove the leading whitespace, or put the line right after an option.",
    );
    // A blank line or a comment ends the value above, as in oslo.config.
    expect(message('[DEFAULT]\ndebug = true\n\n\tfalse\n')).toContain('/etc/nova/nova.conf:4: unexpected continuation line');
    expect(message('[DEFAULT]\ndebug = true\n# comment\n\tfalse\n')).toContain('/etc/nova/nova.conf:4: unexpected continuation line');
  });

  it('an empty key', () => {
    expect(message('[DEFAULT]\n = true\n'.replace('\n = ', '\n= '))).toBe(
      "/etc/nova/nova.conf:2: key cannot be empty: the line starts with '='. Name the option: write options as name = value below a section header such as [DEFAULT].",
    );
  });

  it('a line that is no assignment', () => {
    expect(message('[DEFAULT]\ndebug\n')).toBe(
      "/etc/nova/nova.conf:2: no ':' or '=' found in the line starting 'debug'. To set an option, write options as name = value below a section header such as [DEFAULT].",
    );
    // Only the first word: the rest may be a password written without '='.
    expect(message('[keystone_authtoken]\npassword Hunter2pw\n')).toBe(
      "/etc/nova/nova.conf:2: no ':' or '=' found in the line starting 'password'. To set an option, write options as name = value below a section header such as [DEFAULT].",
    );
    expect(message('debug\n')).toBe(
      "/etc/nova/nova.conf:1: the line is not 'name = value', a [section] header or a comment. To set an option, write options as name = value below a section header such as [DEFAULT].",
    );
  });

  it('invalid UTF-8 and NUL bytes', () => {
    const bytes = Buffer.concat([Buffer.from('[DEFAULT]\r\nhost = caf'), Buffer.from([0xe9]), Buffer.from('\n')]);
    expect(message(bytes)).toBe(
      '/etc/nova/nova.conf:2: the file is not valid UTF-8: byte 0xe9 at column 11. Save the file as UTF-8.',
    );
    expect(message('[DEFAULT]\nhost = a\0b\n')).toBe(
      '/etc/nova/nova.conf:2: the file contains a NUL byte at column 9; a configuration file must be text. Remove the stray byte (was the file truncated or overwritten?).',
    );
  });
});

describe('a file that is not a configuration: nothing of its content is shown', () => {
  // The shape of /etc/shadow and /etc/passwd, with a marker where the hash is.
  const MARKER = 'MARKERxSECRETx7f3a';
  const shadowLike = [
    `root:$y$j9T$${MARKER}$Zx0:19700:0:99999:7:::`,
    'daemon:*:19700:0:99999:7:::',
    ` ${MARKER}`,
    `[${MARKER}`,
    `${MARKER} ${MARKER}`,
    `=${MARKER}`,
  ];

  it('whichever of its lines comes first, the error names only file and line', () => {
    for (let first = 0; first < shadowLike.length; first++) {
      const lines = [...shadowLike.slice(first), ...shadowLike.slice(0, first)];
      const e = errorFor(lines.join('\n') + '\n', '/etc/shadow');
      expect(e.code).toBe('CONFIG_PARSE');
      expect(e.message).toMatch(/^\/etc\/shadow:1: /);
      expect(e.message).not.toContain(MARKER);
      expect(e.message).not.toContain('root');
      expect(e.message).not.toContain('$y$');
    }
  });
});

describe('files', () => {
  const work = mkdtempSync(path.join(tmpdir(), 'novalet-config-files-'));
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it('a missing --config-file is an error', () => {
    const missing = path.join(work, 'nova.conf');
    expect(() => loadConfig({ configFiles: [missing] })).toThrow(
      `${missing}: the configuration file does not exist. Check the --config-file path.`,
    );
    try {
      loadConfig({ configFiles: [missing] });
    } catch (err) {
      expect(err).toMatchObject({ code: 'CONFIG_FILE_MISSING', file: missing, line: null });
    }
  });

  /** The ConfigError loading these files and folders throws. */
  function loadError(options: Parameters<typeof loadConfig>[0]): ConfigError {
    try {
      loadConfig(options);
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      return err as ConfigError;
    }
    throw new Error('no error');
  }

  // FIFOs and /dev/zero, which hang or exhaust memory without the rule, are in fuzz.test.ts, through the command.
  it('only a regular file is read: a directory or a device is refused, by name and kind', () => {
    expect(loadError({ configFiles: [work] })).toMatchObject({
      code: 'CONFIG_FILE_NOT_REGULAR',
      message: `${work}: the configuration file is a directory; only a regular file is read as configuration. Name a regular file with --config-file.`,
    });
    expect(loadError({ configFiles: ['/dev/null'] }).message).toBe(
      '/dev/null: the configuration file is a character device; only a regular file is read as configuration. Name a regular file with --config-file.',
    );
  });

  it('files found through --config-dir are held to the same rules', () => {
    const dir = mkdtempSync(path.join(work, 'dir-'));
    writeFileSync(path.join(dir, '10-good.conf'), '[DEFAULT]\ndebug = true\n');
    symlinkSync('/dev/null', path.join(dir, '20-null.conf'));
    expect(loadError({ configDirs: [dir] })).toMatchObject({
      code: 'CONFIG_FILE_NOT_REGULAR',
      message: `${dir}/20-null.conf: the configuration file is a character device; only a regular file is read as configuration. Only regular files ending in .conf belong in a --config-dir.`,
    });
    rmSync(path.join(dir, '20-null.conf'));
    mkdirSync(path.join(dir, '30-folder.conf'));
    expect(loadError({ configDirs: [dir] }).message).toContain(`${dir}/30-folder.conf: the configuration file is a directory;`);
    rmSync(dir, { recursive: true });
  });

  it('a file larger than 1 MiB is refused without being read whole', () => {
    const big = path.join(work, 'big.conf');
    writeFileSync(big, '[DEFAULT]\n');
    truncateSync(big, 8 * 1024 * 1024 * 1024); // sparse: 8 GiB of NULs that take no disk
    const started = Date.now();
    expect(loadError({ configFiles: [big] })).toMatchObject({
      code: 'CONFIG_FILE_TOO_LARGE',
      message: `${big}: the configuration file is larger than 1 MiB, far more than any nova.conf. Check that it is the configuration file you meant.`,
    });
    expect(Date.now() - started).toBeLessThan(2000);
    // Exactly the limit is still read (and judged on its content).
    truncateSync(big, 1024 * 1024);
    expect(loadError({ configFiles: [big] }).code).toBe('CONFIG_PARSE');
    rmSync(big);
  });

  it('errors in a later file name that file', () => {
    const good = path.join(work, 'good.conf');
    const bad = path.join(work, 'bad.conf');
    writeFileSync(good, '[DEFAULT]\ndebug = true\n');
    writeFileSync(bad, '[DEFAULT]\n\ndebug = sometimes\n');
    expect(() => loadConfig({ configFiles: [good, bad] })).toThrow(`${bad}:3: [DEFAULT] debug = 'sometimes' is not a boolean`);
  });
});

describe('secrets are never printed', () => {
  it('a bad reference in transport_url shows the URL with its password masked', () => {
    const e = errorFor('[DEFAULT]\ntransport_url = rabbit://nova:S3cret@$rabbit_hots:5672/\n');
    expect(e.message).toBe(
      "/etc/nova/nova.conf:2: [DEFAULT] transport_url = 'rabbit://nova:***@$rabbit_hots:5672/' refers to $rabbit_hots, which is set nowhere: there is no option rabbit_hots in [DEFAULT]. Set it, or write $$ for a literal '$'.",
    );
    expect(e.value).toBe('rabbit://nova:***@$rabbit_hots:5672/');
    expect(e.message).not.toContain('S3cret');
  });
});

describe('ConfigError', () => {
  it('keeps its message on one line whatever text it is given', () => {
    const e = new ConfigError({ code: 'CONFIG_FILE_UNREADABLE', file: '/odd\nname.conf', problem: 'cannot be read (EIO: i/o error, open \'/odd\nname.conf\').' });
    expect(e.message).toBe("/odd\\nname.conf: cannot be read (EIO: i/o error, open '/odd\\nname.conf').");
  });

  it("says 'default' where the offending value is an option's default", () => {
    const e = new ConfigError({ code: 'CONFIG_CPU_RULE', section: 'libvirt', option: 'virt_type', value: 'kvm', problem: 'x.' });
    expect(e.message).toBe("default: [libvirt] virt_type = 'kvm': x.");
    expect(e).toMatchObject({ file: null, line: null, section: 'libvirt', option: 'virt_type', value: 'kvm' });
  });
});
