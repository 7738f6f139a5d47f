import { describe, expect, it } from 'vitest';
import { convertValue, describeAllowed, parseBoolean, splitList } from '../../config/value-types.js';

describe('value types, as oslo.config', () => {
  it('booleans: 1/t/true/on/y/yes and 0/f/false/off/n/no, any case, stripped', () => {
    for (const s of ['1', 't', 'true', 'on', 'y', 'yes', 'TRUE', 'Yes', ' On ']) expect(parseBoolean(s), s).toBe(true);
    for (const s of ['0', 'f', 'false', 'off', 'n', 'no', 'False', 'NO']) expect(parseBoolean(s), s).toBe(false);
    for (const s of ['', 'maybe', 'enabled', '2', 'truee']) expect(parseBoolean(s), s).toBeUndefined();
  });

  it("integers as Python's int(): sign, underscores between digits, surrounding whitespace", () => {
    const int = { kind: 'int' } as const;
    expect(convertValue(int, ' 42 ', false)).toEqual({ ok: true, value: 42 });
    expect(convertValue(int, '+7', false)).toEqual({ ok: true, value: 7 });
    expect(convertValue(int, '-3', false)).toEqual({ ok: true, value: -3 });
    expect(convertValue(int, '1_000', false)).toEqual({ ok: true, value: 1000 });
    for (const bad of ['1__0', '_1', '0x10', '1e3', '1.0', '١٢']) expect(convertValue(int, bad, false).ok, bad).toBe(false);
    expect(convertValue(int, '', true)).toEqual({ ok: true, value: null });
  });

  it("lists of ports, as oslo's ListOpt(item_type=Integer(min=1, max=65535)): each item a port, the bad one named", () => {
    const ports = { kind: 'list', portItems: true } as const;
    expect(convertValue(ports, '80, 443', false)).toEqual({ ok: true, value: [80, 443] });
    expect(convertValue(ports, '', false)).toEqual({ ok: true, value: [] });
    for (const bad of ['80, http', '0', '65536', '80,,443']) {
      const converted = convertValue(ports, bad, false);
      expect(converted.ok, bad).toBe(false);
      if (!converted.ok) expect(converted.problem, bad).toMatch(/^has an item '.*' that is /);
    }
    expect(describeAllowed(ports)).toBe('a comma-separated list of port numbers from 1 to 65535');
  });

  it('floats: decimals and exponents; no inf or nan', () => {
    const float = { kind: 'float', min: 0 } as const;
    expect(convertValue(float, '1.5', false)).toEqual({ ok: true, value: 1.5 });
    expect(convertValue(float, '16', false)).toEqual({ ok: true, value: 16 });
    expect(convertValue(float, '.5', false)).toEqual({ ok: true, value: 0.5 });
    expect(convertValue(float, '2.', false)).toEqual({ ok: true, value: 2 });
    expect(convertValue(float, '1e1', false)).toEqual({ ok: true, value: 10 });
    expect(convertValue(float, '-0.0', false)).toEqual({ ok: true, value: 0 });
    for (const bad of ['nan', 'inf', '-inf', 'Infinity', '1,5', '', '.']) expect(convertValue(float, bad, false).ok, bad).toBe(false);
  });

  it('lists: comma-separated, items stripped, trailing commas dropped, empty text is []', () => {
    expect(splitList('')).toEqual([]);
    expect(splitList('   ')).toEqual([]);
    expect(splitList('a')).toEqual(['a']);
    expect(splitList(' a , b,c ,')).toEqual(['a', 'b', 'c']);
    expect(splitList('a,\nb,\nc')).toEqual(['a', 'b', 'c']);
    expect(splitList('a,,b')).toEqual(['a', '', 'b']);
    expect(convertValue({ kind: 'list', lowerCaseItems: true }, 'PCID, Vmx', false)).toEqual({ ok: true, value: ['pcid', 'vmx'] });
    expect(convertValue({ kind: 'list' }, 'Nehalem', false)).toEqual({ ok: true, value: ['Nehalem'] });
  });

  it('choices are exact matches', () => {
    const choice = { kind: 'choice', choices: [{ value: 'kvm' }, { value: 'qemu' }] } as const;
    expect(convertValue(choice, 'qemu', false)).toEqual({ ok: true, value: 'qemu' });
    expect(convertValue(choice, 'QEMU', false)).toEqual({
      ok: false,
      problem: 'is not allowed; choose one of: kvm, qemu.',
    });
  });

  it('says what is allowed', () => {
    expect(describeAllowed({ kind: 'int', min: 1 })).toBe('an integer ≥ 1');
    expect(describeAllowed({ kind: 'int' })).toBe('an integer');
    expect(describeAllowed({ kind: 'port', min: 1, max: 65535 })).toBe('an integer ≥ 1 and ≤ 65535');
    expect(describeAllowed({ kind: 'float', min: 0 })).toBe('a number ≥ 0');
    expect(describeAllowed({ kind: 'bool' })).toBe('true or false (also yes/no, on/off, 1/0)');
    expect(describeAllowed({ kind: 'choice', choices: [{ value: 'kvm' }, { value: 'lxc' }, { value: 'qemu' }, { value: 'parallels' }] })).toBe(
      'one of: kvm, lxc, qemu, parallels',
    );
  });
});
