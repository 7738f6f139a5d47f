import { describe, expect, it } from 'vitest';
import { ERROR_CODES } from '../../config/error-codes.js';
import { validateComputeRequest } from '../../messaging/contracts/compute-requests.js';
import {
  asciiEscape,
  DEAD_LETTER_CODES,
  DEAD_LETTER_HEADERS,
  DEAD_LETTER_MEANINGS,
  deadLetterHeaders,
  excerpt,
  MAX_REASON_LENGTH,
  type DeadLetterCode,
} from '../../messaging/contracts/dead-letter.js';
import { KVM_REASON_CODES } from '../../messaging/contracts/kvm-verdict.js';
import { decodeEnvelope, encodeEnvelope, isUtcTime, makeEnvelope, nestingDepth, WIRE_VERSION, type Checked, type Envelope } from '../../messaging/envelope.js';

const LIMITS = { maxBytes: 1024 * 1024 };
const ID = '5b0e2f4a-8c1d-4e7f-9a2b-3c4d5e6f7a8b';
const SENT = '2026-12-01T08:00:00.000Z';

function bytes(value: unknown): Buffer {
  return Buffer.from(typeof value === 'string' ? value : JSON.stringify(value), 'utf8');
}

function envelopeOf(fields: Record<string, unknown>): Buffer {
  return bytes({ version: 1, kind: 'list', id: ID, sent_at: SENT, body: {}, ...fields });
}

function refusal<T>(checked: Checked<T>): { code: DeadLetterCode; reason: string } {
  if (checked.ok) throw new Error(`expected a refusal, got ${JSON.stringify(checked.value)}`);
  return { code: checked.code, reason: checked.reason };
}

function decoded(content: Buffer): Envelope {
  const checked = decodeEnvelope(content, LIMITS);
  if (!checked.ok) throw new Error(`expected an envelope, got ${checked.code}: ${checked.reason}`);
  return checked.value;
}

/** Printable ASCII only: what a header value and a log line may hold. */
const PRINTABLE_ASCII = /^[\x20-\x7e]*$/;

describe('makeEnvelope and encodeEnvelope', () => {
  it('make the five fields, a fresh UUID and the time, and decode back to the same', () => {
    const envelope = makeEnvelope('build', { instance: { name: 'x' } });
    expect(envelope.version).toBe(WIRE_VERSION);
    expect(envelope.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(isUtcTime(envelope.sent_at)).toBe(true);
    expect(makeEnvelope('build', {}).id).not.toBe(envelope.id);
    expect(makeEnvelope('list', {}, ID).id).toBe(ID);
    expect(decoded(encodeEnvelope(envelope))).toEqual(envelope);
  });

  it('encode only the envelope fields, and lone surrogates as escapes, so the bytes are valid UTF-8', () => {
    const envelope = { ...makeEnvelope('list', { note: 'a\ud800b' }), extra: 'not sent' } as Envelope;
    const content = encodeEnvelope(envelope);
    expect(content.toString('utf8')).not.toContain('extra');
    expect(content.toString('utf8')).toContain('\\ud800');
    expect(decoded(content).body).toEqual({ note: 'a\ud800b' });
  });
});

describe('decodeEnvelope', () => {
  it('takes a valid envelope, ignores fields beyond the five and gives the id in lower case', () => {
    const value = decoded(envelopeOf({ id: ID.toUpperCase(), trace: { anything: [1, 2] }, priority: 9 }));
    expect(value).toEqual({ version: 1, kind: 'list', id: ID, sent_at: SENT, body: {} });
  });

  it("takes sent_at as JavaScript's toISOString and Python's isoformat() write UTC", () => {
    for (const sentAt of ['2026-12-01T08:00:00Z', '2026-12-01T08:00:00.000Z', '2026-12-01T08:00:00.123456+00:00', '2024-02-29T23:59:59.999999999Z', '0024-02-29T00:00:00Z']) {
      expect(decoded(envelopeOf({ sent_at: sentAt })).sent_at, sentAt).toBe(sentAt);
    }
  });

  it('skips one leading byte-order mark, as Python does; a second is not JSON', () => {
    const bom = Buffer.from([0xef, 0xbb, 0xbf]);
    expect(decoded(Buffer.concat([bom, envelopeOf({})])).kind).toBe('list');
    expect(refusal(decodeEnvelope(Buffer.concat([bom, bom, envelopeOf({})]), LIMITS)).code).toBe('MESSAGE_NOT_JSON');
  });

  it('refuses a message over maxBytes before reading it: even bytes that are not UTF-8 are MESSAGE_TOO_LARGE', () => {
    const big = Buffer.alloc(2049, 0xff);
    const { code, reason } = refusal(decodeEnvelope(big, { maxBytes: 2048 }));
    expect(code).toBe('MESSAGE_TOO_LARGE');
    expect(reason).toBe(
      'The message is 2049 bytes, more than the 2048 novalet reads ([oslo_messaging_rabbit] max_message_size): send a smaller message, or raise max_message_size on the receiving host.',
    );
    // One byte less is read (and then refused for what it is).
    expect(refusal(decodeEnvelope(big.subarray(1), { maxBytes: 2048 })).code).toBe('MESSAGE_NOT_UTF8');
    expect(decoded(envelopeOf({})).kind).toBe('list');
    const exact = envelopeOf({});
    expect(decodeEnvelope(exact, { maxBytes: exact.length }).ok).toBe(true);
    expect(refusal(decodeEnvelope(exact, { maxBytes: exact.length - 1 })).code).toBe('MESSAGE_TOO_LARGE');
  });

  it('refuses invalid UTF-8: a stray byte, an overlong form, an encoded surrogate, a cut sequence', () => {
    const inName = (raw: number[]) => Buffer.concat([Buffer.from('{"version": 1, "kind": "list", "id": "' + ID + '", "sent_at": "' + SENT + '", "body": {"x": "'), Buffer.from(raw), Buffer.from('"}}')]);
    for (const raw of [[0xff], [0xc0, 0xaf], [0xed, 0xa0, 0x80], [0xe2, 0x82], [0x80]]) {
      expect(refusal(decodeEnvelope(inName(raw), LIMITS)), raw.join(',')).toEqual({
        code: 'MESSAGE_NOT_UTF8',
        reason: 'The message is not valid UTF-8: publish the JSON envelope encoded as UTF-8.',
      });
    }
    // Valid multi-byte UTF-8 passes.
    expect(decoded(inName([0xe2, 0x82, 0xac])).body).toEqual({ x: '€' });
  });

  it('refuses what is not JSON, saying where it breaks and never quoting it', () => {
    for (const text of ['', '   ', 'hello', '{"version": 1', '{"version": 1,}', "{'version': 1}", 'NaN']) {
      const { code, reason } = refusal(decodeEnvelope(bytes(text), LIMITS));
      expect(code, text).toBe('MESSAGE_NOT_JSON');
      expect(reason).toMatch(/^The message is not JSON \((it is empty|the JSON syntax breaks at character \d+|it is not one complete JSON value)\): publish one JSON object, the envelope of docs\/messages\.md\.$/);
    }
    const secret = 'password=hunter2-'.repeat(100);
    const { reason } = refusal(decodeEnvelope(bytes(`{"x": ${secret}}`), LIMITS));
    expect(reason).not.toContain('hunter2');
  });

  it('refuses nesting deeper than the limit before parsing: a megabyte of [ is refused fast, without a stack overflow', () => {
    const megabyte = Buffer.alloc(1024 * 1024, '[');
    const started = process.hrtime.bigint();
    expect(refusal(decodeEnvelope(megabyte, { maxBytes: 2 * 1024 * 1024 })).code).toBe('MESSAGE_TOO_DEEP');
    // Closed and so valid JSON: without the count it would parse (or overflow) and be refused as ENVELOPE_INVALID.
    const deepButValid = bytes('['.repeat(100_000) + ']'.repeat(100_000));
    expect(refusal(decodeEnvelope(deepButValid, LIMITS)).code).toBe('MESSAGE_TOO_DEEP');
    // Generous: the count stops at the limit; a recursive parse of this much would take far longer or crash.
    expect(Number(process.hrtime.bigint() - started) / 1e6).toBeLessThan(2000);
  });

  it('counts the envelope as level 1 and ignores brackets inside strings', () => {
    const nested = (levels: number) => {
      let value: unknown = {};
      for (let i = 0; i < levels; i++) value = { a: value };
      return value;
    };
    // The envelope (1) + body (2) + 30 more = 32: the default limit.
    expect(decodeEnvelope(envelopeOf({ body: nested(30) }), LIMITS).ok).toBe(true);
    const { code, reason } = refusal(decodeEnvelope(envelopeOf({ body: nested(31) }), LIMITS));
    expect(code).toBe('MESSAGE_TOO_DEEP');
    expect(reason).toBe('The message nests arrays and objects more than 32 levels deep: a novalet message needs far fewer; send the envelope of docs/messages.md.');
    expect(refusal(decodeEnvelope(envelopeOf({ body: nested(3) }), { ...LIMITS, maxDepth: 4 })).code).toBe('MESSAGE_TOO_DEEP');
    // Brackets and escaped quotes inside strings do not count.
    expect(decoded(envelopeOf({ body: { text: '[[[[{{{{"\\"[[['.repeat(50) } })).body).toEqual({ text: '[[[[{{{{"\\"[[['.repeat(50) });
    expect(nestingDepth('"\\\\"[[', 10)).toBe(2);
    expect(nestingDepth('{"a": "\\"[[[[", "b": [1]}', 10)).toBe(2);
  });

  it('refuses JSON that is not an envelope object', () => {
    const cases: [unknown, string][] = [
      [[1, 2], 'The message is an array, not an envelope: publish a JSON object {"version": 1, "kind", "id", "sent_at", "body"}.'],
      [JSON.stringify('just a string'), "The message is the string 'just a string', not an envelope: publish a JSON object {\"version\": 1, \"kind\", \"id\", \"sent_at\", \"body\"}."],
      [null, 'The message is null, not an envelope: publish a JSON object {"version": 1, "kind", "id", "sent_at", "body"}.'],
      [42, 'The message is 42, not an envelope: publish a JSON object {"version": 1, "kind", "id", "sent_at", "body"}.'],
    ];
    for (const [value, reason] of cases) expect(refusal(decodeEnvelope(bytes(value), LIMITS))).toEqual({ code: 'ENVELOPE_INVALID', reason });
  });

  it('refuses a missing or malformed field of the envelope, naming it', () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ version: undefined }, 'version is missing: give the number 1.'],
      [{ version: '1' }, "version is the string '1': give the number 1."],
      [{ kind: undefined }, 'kind is missing: give the request\'s name as a string of 1 to 64 characters, such as "build".'],
      [{ kind: '' }, 'kind is the string \'\': give the request\'s name as a string of 1 to 64 characters, such as "build".'],
      [{ kind: 7 }, 'kind is 7: give the request\'s name as a string of 1 to 64 characters, such as "build".'],
      [{ kind: 'k'.repeat(65) }, `kind is the string '${'k'.repeat(37)}...': give the request's name as a string of 1 to 64 characters, such as "build".`],
      [{ id: undefined }, 'id is missing: give a UUID unique to this message, such as "5b0e2f4a-8c1d-4e7f-9a2b-3c4d5e6f7a8b".'],
      [{ id: 'not-a-uuid' }, 'id is the string \'not-a-uuid\': give a UUID unique to this message, such as "5b0e2f4a-8c1d-4e7f-9a2b-3c4d5e6f7a8b".'],
      [{ id: `${ID}0` }, `id is the string '${ID}0': give a UUID unique to this message, such as "5b0e2f4a-8c1d-4e7f-9a2b-3c4d5e6f7a8b".`],
      [{ sent_at: undefined }, 'sent_at is missing: give an ISO 8601 UTC time, such as "2026-12-01T08:00:00.000Z".'],
      [{ sent_at: 1764576000 }, 'sent_at is 1764576000: give an ISO 8601 UTC time, such as "2026-12-01T08:00:00.000Z".'],
      [{ body: undefined }, 'body is missing: give a JSON object ({} for a request that takes no field).'],
      [{ body: [] }, 'body is an array: give a JSON object ({} for a request that takes no field).'],
      [{ body: null }, 'body is null: give a JSON object ({} for a request that takes no field).'],
      [{ body: 'x' }, "body is the string 'x': give a JSON object ({} for a request that takes no field)."],
    ];
    for (const [fields, reason] of cases) expect(refusal(decodeEnvelope(envelopeOf(fields), LIMITS)), JSON.stringify(fields)).toEqual({ code: 'ENVELOPE_INVALID', reason });
  });

  it('takes any RFC 4122 variant of UUID as id, in either case', () => {
    for (const id of ['00000000-0000-0000-0000-000000000000', '6ba7b810-9dad-11d1-80b4-00c04fd430c8', 'C73BCDCC-2669-4BF6-81D3-E4AE73FB11FD', '0b6c2f1a-8d3e-7f5a-cb7c-1d2e3f4a5b6c']) {
      expect(decoded(envelopeOf({ id })).id).toBe(id.toLowerCase());
    }
  });

  it('refuses sent_at that is not ISO 8601 UTC with seconds, or a day that does not exist', () => {
    for (const sentAt of ['2026-12-01T08:00:00+01:00', '2026-12-01T08:00Z', '2026-12-01 08:00:00Z', '2026-12-01T08:00:00', '2026-02-30T08:00:00Z', '2025-02-29T00:00:00Z', '2026-13-01T00:00:00Z', '2026-12-01T24:00:00Z', '2026-12-01T08:60:00Z', '2026-12-01T08:00:00.1234567890Z', 'yesterday']) {
      expect(refusal(decodeEnvelope(envelopeOf({ sent_at: sentAt }), LIMITS)).code, sentAt).toBe('ENVELOPE_INVALID');
    }
  });

  it('refuses another version as VERSION_UNSUPPORTED, before looking at the other fields', () => {
    for (const version of [2, 0, -1, 1.5]) {
      expect(refusal(decodeEnvelope(bytes({ version, kind: 7 }), LIMITS)), String(version)).toEqual({
        code: 'VERSION_UNSUPPORTED',
        reason: `version is ${version}: this novalet speaks wire version 1 only; send version 1.`,
      });
    }
  });
});

describe('dead-letter codes and headers', () => {
  /** One message per code, each refused with that code by decoding or by the compute host's check. */
  // HANDLER_FAILED is the broker layer's, for a handler that threw (test/messaging/broker.test.ts); REPLY_TO_MISSING
  // the compute service's, for a call without reply_to, and UNROUTABLE the outbox's, for a mandatory message that
  // came back (their tests are with the service and the outbox).
  const NOT_DECODING = ['HANDLER_FAILED', 'REPLY_TO_MISSING', 'UNROUTABLE'] as const;
  type DecodingCode = Exclude<DeadLetterCode, (typeof NOT_DECODING)[number]>;
  const DECODING_CODES = DEAD_LETTER_CODES.filter((code): code is DecodingCode => !(NOT_DECODING as readonly string[]).includes(code));
  const reaching: Record<DecodingCode, () => Checked<unknown>> = {
    MESSAGE_TOO_LARGE: () => decodeEnvelope(Buffer.alloc(2000, 0x20), { maxBytes: 1024 }),
    MESSAGE_NOT_UTF8: () => decodeEnvelope(Buffer.from([0x7b, 0xfe, 0x7d]), LIMITS),
    MESSAGE_NOT_JSON: () => decodeEnvelope(bytes('{"version": 1'), LIMITS),
    MESSAGE_TOO_DEEP: () => decodeEnvelope(bytes('['.repeat(33) + ']'.repeat(33)), LIMITS),
    ENVELOPE_INVALID: () => decodeEnvelope(bytes('[]'), LIMITS),
    VERSION_UNSUPPORTED: () => decodeEnvelope(envelopeOf({ version: 2 }), LIMITS),
    KIND_UNKNOWN: () => validateComputeRequest(decoded(envelopeOf({ kind: 'resize' }))),
    BODY_INVALID: () => validateComputeRequest(decoded(envelopeOf({ kind: 'show', body: { uuid: 'x' } }))),
  };

  it('every code is reachable, by the message it is named for', () => {
    expect(Object.keys(reaching).sort()).toEqual([...DECODING_CODES].sort());
    for (const code of DECODING_CODES) expect(refusal(reaching[code]()).code, code).toBe(code);
  });

  it('every code has one meaning, a sentence, and none is also an error code or a KVM reason', () => {
    expect(Object.keys(DEAD_LETTER_MEANINGS).sort()).toEqual([...DEAD_LETTER_CODES].sort());
    for (const code of DEAD_LETTER_CODES) expect(DEAD_LETTER_MEANINGS[code], code).toMatch(/^[A-Z].{20,}\.$/);
    expect(new Set(Object.values(DEAD_LETTER_MEANINGS)).size).toBe(DEAD_LETTER_CODES.length);
    const elsewhere = new Set<string>([...Object.keys(ERROR_CODES), ...KVM_REASON_CODES]);
    expect(DEAD_LETTER_CODES.filter((code) => elsewhere.has(code))).toEqual([]);
  });

  it('every reason of decoding is printable ASCII and at most 1000 characters', () => {
    for (const code of DECODING_CODES) {
      const { reason } = refusal(reaching[code]());
      expect(reason, code).toMatch(PRINTABLE_ASCII);
      expect(reason.length, code).toBeLessThanOrEqual(MAX_REASON_LENGTH);
    }
  });

  it('deadLetterHeaders names the three headers and keeps their values printable ASCII and short', () => {
    expect(deadLetterHeaders('BODY_INVALID', 'body.x is 1: give 2.', 'compute.host-a')).toEqual({
      'x-novalet-error': 'BODY_INVALID',
      'x-novalet-reason': 'body.x is 1: give 2.',
      'x-novalet-routing-key': 'compute.host-a',
    });
    expect(DEAD_LETTER_HEADERS).toEqual({ error: 'x-novalet-error', reason: 'x-novalet-reason', routingKey: 'x-novalet-routing-key' });
    const headers = deadLetterHeaders('BODY_INVALID', `line one\nline two\u0000 é ${'x'.repeat(5000)}`, `compute.h\u00e9\r\n${'k'.repeat(300)}`);
    for (const value of Object.values(headers)) expect(value).toMatch(PRINTABLE_ASCII);
    expect(headers['x-novalet-reason']!.length).toBe(MAX_REASON_LENGTH);
    expect(headers['x-novalet-reason']).toMatch(/^line one\\nline two\\x00 \\xe9 x+\.\.\.$/);
    expect(headers['x-novalet-routing-key']!.length).toBeLessThanOrEqual(255);
    expect(headers['x-novalet-routing-key']).toMatch(/^compute\.h\\xe9\\r\\nk+\.\.\.$/);
  });

  it('passes a reason that shows an escaped value through unchanged (its backslashes are not doubled)', () => {
    const { code, reason } = refusal(validateComputeRequest(decoded(envelopeOf({ kind: 'show', body: { uuid: 'a\u0000b\\c\'d' } }))));
    expect(reason).toBe("body.uuid is the string 'a\\x00b\\\\c\\'d': give a UUID such as 0b6c2f1a-8d3e-4f5a-9b7c-1d2e3f4a5b6c.");
    expect(deadLetterHeaders(code, reason, 'compute.h')['x-novalet-reason']).toBe(reason);
  });

  it('never cuts a header value inside an escape', () => {
    const value = deadLetterHeaders('BODY_INVALID', `${'a'.repeat(995)}\u00e9\u00e9`, 'k')['x-novalet-reason']!;
    expect(value).toBe(`${'a'.repeat(995)}...`);
  });

  it('excerpt shows at most 40 escaped characters of a value, quoted', () => {
    expect(excerpt('abc')).toBe("'abc'");
    expect(excerpt("it's")).toBe("'it\\'s'");
    expect(excerpt('x'.repeat(40))).toBe(`'${'x'.repeat(40)}'`);
    expect(excerpt('x'.repeat(41))).toBe(`'${'x'.repeat(37)}...'`);
    expect(excerpt('y'.repeat(10_000)).length).toBe(42);
    expect(excerpt('a\nb\u0000c\u001b[31m\u2028\u{1f600}\\')).toBe("'a\\nb\\x00c\\x1b[31m\\u2028\\u{1f600}\\\\'");
    expect(asciiEscape('\t\r')).toBe('\\t\\r');
    for (const value of ['\n'.repeat(100), '\u{1f600}'.repeat(30), 'é'.repeat(100)]) {
      const shown = excerpt(value);
      expect(shown).toMatch(PRINTABLE_ASCII);
      expect(shown.length).toBeLessThanOrEqual(42);
    }
  });
});
