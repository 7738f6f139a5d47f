/**
 * Python's str() and repr() of the values ComputeCapabilitiesFilter
 * matches against: each expected text is what CPython 3 prints.
 */
import { describe, expect, it } from 'vitest';
import { floatRepr, pyFloat, pyJsonDumps, pyRepr, pyStr, strRepr } from '../../scheduler-filters/host-state/python-str.js';

describe("Python's str() and repr()", () => {
  it('repr(float): shortest round trip, fixed from 1e-4 up to 1e16, else scientific with a two-digit exponent', () => {
    const cases: [number, string][] = [
      [16, '16.0'], [0.1, '0.1'], [-2.5, '-2.5'], [100, '100.0'], [1234.5, '1234.5'], [1 / 3, '0.3333333333333333'],
      [1e15, '1000000000000000.0'], [2 ** 53, '9007199254740992.0'], [1e16, '1e+16'], [1.2345678901234568e17, '1.2345678901234568e+17'],
      [0.0001, '0.0001'], [0.00001, '1e-05'], [1.5e-7, '1.5e-07'], [1.7976931348623157e308, '1.7976931348623157e+308'], [5e-324, '5e-324'],
      [0, '0.0'], [-0, '-0.0'], [Infinity, 'inf'], [-Infinity, '-inf'], [Number.NaN, 'nan'],
    ];
    for (const [x, text] of cases) expect([x, floatRepr(x)]).toEqual([x, text]);
  });

  it("repr(str): single quotes unless only single quotes are inside; Python's escapes; printable Unicode kept", () => {
    const cases: [string, string][] = [
      ['avx', "'avx'"], ["a'b", `"a'b"`], ['a"b', `'a"b'`], [`a'b"c`, `'a\\'b"c'`], ['back\\slash', "'back\\\\slash'"],
      ['\n\t\r', "'\\n\\t\\r'"], ['\x00\x1f\x7f', "'\\x00\\x1f\\x7f'"], ['é', "'é'"], ['\u00a0', "'\\xa0'"], ['\u200b', "'\\u200b'"], ['😀', "'😀'"], ['\u{e0001}', "'\\U000e0001'"],
    ];
    for (const [s, text] of cases) expect([s, strRepr(s)]).toEqual([s, text]);
  });

  it('str() of a str is the str; of anything else its repr, lists and dicts as Python prints them', () => {
    expect(pyStr('QEMU')).toBe('QEMU');
    expect(pyStr(9002000)).toBe('9002000');
    expect(pyStr(pyFloat(16))).toBe('16.0');
    expect(pyStr(2.5)).toBe('2.5');
    expect(pyStr(true)).toBe('True');
    expect(pyStr(null)).toBe('None');
    expect(pyStr(['aes', 'avx'])).toBe("['aes', 'avx']");
    expect(pyStr([['x86_64', 'qemu', 'hvm']])).toBe("[['x86_64', 'qemu', 'hvm']]");
    expect(pyRepr({ cells: 1, vendor: 'AMD', flags: [false, null] })).toBe("{'cells': 1, 'vendor': 'AMD', 'flags': [False, None]}");
  });

  it("json.dumps as nova's jsonutils: ', ' and ': ', non-ASCII escaped", () => {
    expect(pyJsonDumps({ vendor: 'AMD', features: ['aes', 'avx'], topology: { cells: 1 } })).toBe('{"vendor": "AMD", "features": ["aes", "avx"], "topology": {"cells": 1}}');
    expect(pyJsonDumps(['é', '"q"\n', '😀'])).toBe('["\\u00e9", "\\"q\\"\\n", "\\ud83d\\ude00"]');
  });
});
