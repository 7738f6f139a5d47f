/**
 * nova's extra_specs_ops.match, case by case: each row is what nova's own
 * function returns (or raises) for that value and requirement, worked out
 * from nova/scheduler/filters/extra_specs_ops.py and Python's float() and
 * str ordering.
 */
import { describe, expect, it } from 'vitest';
import { NovaletError } from '../../config/novalet-error.js';
import { matchExtraSpec, pythonFloat } from '../../scheduler-filters/filters/extra-specs-ops.js';

type Row = [value: string | null, req: string, expected: boolean];

const ROWS: Record<string, Row[]> = {
  'no operator: the whole requirement, exactly': [
    ['1', '1', true],
    ['1', '2', false],
    ['x86_64', 'x86_64', true],
    ['x86_64 ', 'x86_64', false],
    // The first word is no operator: compared whole, spaces included.
    ['a b', 'a b', true],
    [null, 'a', false],
    ['', '', true],
  ],
  "'=' is at least, as floats": [
    ['4', '= 2', true],
    ['2', '= 2', true],
    ['1', '= 2', false],
    ['2.0', '= 2', true],
    ['1e3', '= 999', true],
  ],
  "'==' and '!=' as floats": [
    ['2', '== 2.0', true],
    ['2', '== 3', false],
    ['2', '!= 3', true],
    ['2.0', '!= 2', false],
    ['nan', '== nan', false],
    ['nan', '!= nan', true],
  ],
  "'>=' and '<=' as floats": [
    ['10', '>= 9', true],
    ['9', '>= 10', false],
    // As floats, not strings: '10' < '9' as strings.
    ['10', '<= 9', false],
    [' 1_000 ', '>= 999', true],
    ['inf', '>= 1e308', true],
    ['-Infinity', '<= -1e308', true],
  ],
  'string operators, by code point': [
    ['abc', 's== abc', true],
    ['abc', 's== ABC', false],
    ['abc', 's!= abd', true],
    ['abc', 's< abd', true],
    ['abd', 's< abc', false],
    ['abc', 's<= abc', true],
    ['b', 's> abc', true],
    ['ab', 's> abc', false],
    ['abc', 's>= abc', true],
    // As strings, not numbers.
    ['10', 's< 9', true],
    // A code point above the BMP sorts after U+FFFF in Python (UTF-16 order would say before).
    ['\u{1F600}', 's> \uFFFF', true],
  ],
  "'<in>': a substring": [
    ['x86_64 i686', '<in> i686', true],
    ['avx2', '<in> avx', true],
    ['sse', '<in> avx', false],
    // Only the first word counts.
    ['avx', '<in> avx sse4', true],
  ],
  "'<all-in>': every word a substring": [
    ['avx avx2 sse4_2', '<all-in> avx sse4_2', true],
    ['avx avx2', '<all-in> avx sse4_2', false],
    ['abc', '<all-in> a b c', true],
  ],
  "'<or>': one of the values": [
    ['kvm', '<or> qemu <or> kvm', true],
    ['qemu', '<or> qemu', true],
    ['xen', '<or> qemu <or> kvm', false],
    // Every second word is skipped as the keyword, whatever it says.
    ['kvm', '<or> qemu and kvm', true],
    ['and', '<or> qemu and kvm', false],
    // A trailing keyword ends the list.
    ['qemu', '<or> qemu <or>', true],
    ['x', '<or> qemu <or>', false],
  ],
  'an operator with nothing after it, or no value': [
    ['1', '==', false],
    ['a', 's==', false],
    ['a', '<in>', false],
    ['a', '<all-in>', false],
    [null, '== 1', false],
    [null, '<or> a', false],
    [null, '<in> a', false],
  ],
  "whitespace as Python's split(): runs of any kind": [
    ['2', ' >=\t\n 1 ', true],
    ['kvm', '<or>  qemu\t<or>\nkvm', true],
  ],
};

describe("matchExtraSpec: nova's extra_specs_ops.match", () => {
  for (const [group, rows] of Object.entries(ROWS)) {
    it(group, () => {
      for (const [value, req, expected] of rows) expect({ value, req, matches: matchExtraSpec(value, req) }).toEqual({ value, req, matches: expected });
    });
  }

  it('where nova raises (a float operator on what float() cannot read, a bare <or>), EXTRA_SPEC_NOT_COMPARABLE names the requirement and the value', () => {
    const cases: [string, string, string][] = [
      ['x86_64', '>= 2', "'x86_64' is not a number"],
      ['2', '== two', "'two' is not a number"],
      ['', '= 1', "'' is not a number"],
      ['0x10', '>= 1', "'0x10' is not a number"],
      ['True', '== 1', "'True' is not a number"],
      ['1_', '>= 1', "'1_' is not a number"],
      ['kvm', '<or>', "'<or>' has no value after it"],
    ];
    for (const [value, req, why] of cases) {
      let thrown: unknown;
      try {
        matchExtraSpec(value, req);
      } catch (err) {
        thrown = err;
      }
      expect(thrown, `${value} ${req}`).toBeInstanceOf(NovaletError);
      expect((thrown as NovaletError).code).toBe('EXTRA_SPEC_NOT_COMPARABLE');
      expect((thrown as NovaletError).message).toContain(`'${req}'`);
      expect((thrown as NovaletError).message).toContain(why);
    }
  });

  it("pythonFloat reads what Python's float() reads, and nothing else", () => {
    const reads: [string, number][] = [['1', 1], [' -2.5 ', -2.5], ['+.5', 0.5], ['1.', 1], ['1.e2', 100], ['1_000.000_1', 1000.0001], ['1e1_0', 1e10], ['INF', Infinity], ['-infinity', -Infinity], ['1E-3', 0.001]];
    for (const [text, number] of reads) expect([text, pythonFloat(text)]).toEqual([text, number]);
    expect(Number.isNaN(pythonFloat('NaN'))).toBe(true);
    for (const text of ['', ' ', '0x10', '1__0', '_1', '1_', '1e', 'e5', '.', '1.2.3', 'Infinity1', '0b1', '1 2']) expect([text, pythonFloat(text)]).toEqual([text, null]);
  });
});
