import { describe, expect, it } from 'vitest';
import { decodeConfigBytes, normalizeSectionName, parseIni } from '../../config/ini-reader.js';

const entries = (text: string) =>
  parseIni(text, '/f.conf').entries.map(({ line, section, key, value }) => ({ line, section, key, value }));

describe('parseIni, as oslo_config/iniparser.py', () => {
  it('reads key = value and key: value, splitting at whichever comes first', () => {
    expect(entries('[DEFAULT]\na = b\nc: d\nurl = http://x:1/\ntime: 12:30\ne=f=g\n')).toEqual([
      { line: 2, section: 'DEFAULT', key: 'a', value: 'b' },
      { line: 3, section: 'DEFAULT', key: 'c', value: 'd' },
      { line: 4, section: 'DEFAULT', key: 'url', value: 'http://x:1/' },
      { line: 5, section: 'DEFAULT', key: 'time', value: '12:30' },
      { line: 6, section: 'DEFAULT', key: 'e', value: 'f=g' },
    ]);
  });

  it('has no inline comments', () => {
    expect(entries('[DEFAULT]\na = b # c\nd = e ; f\n')).toEqual([
      { line: 2, section: 'DEFAULT', key: 'a', value: 'b # c' },
      { line: 3, section: 'DEFAULT', key: 'd', value: 'e ; f' },
    ]);
  });

  it('skips # and ; comment lines and blank lines', () => {
    expect(entries('# top\n; top\n[DEFAULT]\n\n#a = 1\n;b = 2\nc = 3\n')).toEqual([
      { line: 7, section: 'DEFAULT', key: 'c', value: '3' },
    ]);
  });

  it('removes one pair of matching quotes, and only a matching pair', () => {
    expect(entries(`[DEFAULT]\na = "x y"\nb = 'x'\nc = "x'\nd = ""x""\ne = "\nf = 'it's'\n`).map((e) => e.value)).toEqual([
      'x y',
      'x',
      `"x'`,
      '"x"',
      '',
      "it's",
    ]);
  });

  it('joins continuation lines with newlines until a blank line or the next key', () => {
    expect(entries('[DEFAULT]\na = one\n  two\n\tthree\nb = 1\nc = x\n\n')).toEqual([
      { line: 2, section: 'DEFAULT', key: 'a', value: 'one\ntwo\nthree' },
      { line: 5, section: 'DEFAULT', key: 'b', value: '1' },
      { line: 6, section: 'DEFAULT', key: 'c', value: 'x' },
    ]);
    // An indented comment is a continuation in oslo.config, not a comment.
    expect(entries('[DEFAULT]\na = 1\n  # two\n')[0]!.value).toBe('1\n# two');
  });

  it('strips keys, values and trailing whitespace; counts \\r\\n, \\r and \\n as line ends', () => {
    expect(entries('[DEFAULT]\r\n  \r\na  =   b   \r\nc=d\re = f\n')).toEqual([
      { line: 3, section: 'DEFAULT', key: 'a', value: 'b' },
      { line: 4, section: 'DEFAULT', key: 'c', value: 'd' },
      { line: 5, section: 'DEFAULT', key: 'e', value: 'f' },
    ]);
  });

  it('lower-cases section names except DEFAULT, and keeps option names as written', () => {
    expect(entries('[LibVirt]\nVirt_Type = qemu\n[DEFAULT]\na = 1\n[Default]\nb = 2\n')).toEqual([
      { line: 2, section: 'libvirt', key: 'Virt_Type', value: 'qemu' },
      { line: 4, section: 'DEFAULT', key: 'a', value: '1' },
      { line: 6, section: 'default', key: 'b', value: '2' },
    ]);
    expect(normalizeSectionName('DEFAULT')).toBe('DEFAULT');
    expect(normalizeSectionName('Keystone_AuthToken')).toBe('keystone_authtoken');
  });

  it('allows an empty value and repeated keys (the caller takes the last)', () => {
    expect(entries('[DEFAULT]\na =\na = 2\n')).toEqual([
      { line: 2, section: 'DEFAULT', key: 'a', value: '' },
      { line: 3, section: 'DEFAULT', key: 'a', value: '2' },
    ]);
  });

  it('keeps the file name on every entry', () => {
    expect(parseIni('[DEFAULT]\na = 1\n', '/etc/nova/nova.conf').entries[0]!.file).toBe('/etc/nova/nova.conf');
  });
});

describe('decodeConfigBytes', () => {
  it('decodes UTF-8 and skips a byte-order mark', () => {
    expect(decodeConfigBytes(Buffer.from('\ufeff[DEFAULT]\nhost = café\n'), '/f')).toBe('[DEFAULT]\nhost = café\n');
  });

  it('refuses overlong encodings, surrogates and truncated sequences, naming line and column', () => {
    const cases: [number[], string][] = [
      [[0xc0, 0xaf], 'byte 0xc0 at column 5'],
      [[0xed, 0xa0, 0x80], 'byte 0xed at column 5'],
      [[0xe2, 0x82], 'byte 0xe2 at column 5'],
      [[0xf5, 0x80, 0x80, 0x80], 'byte 0xf5 at column 5'],
    ];
    for (const [bad, where] of cases) {
      const bytes = Buffer.concat([Buffer.from('[x]\na = '), Buffer.from(bad)]);
      expect(() => decodeConfigBytes(bytes, '/f')).toThrow(`/f:2: the file is not valid UTF-8: ${where}.`);
    }
  });
});
