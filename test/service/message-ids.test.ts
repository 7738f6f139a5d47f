import { describe, expect, it } from 'vitest';
import { answerId, uuidV5 } from '../../service/message-ids.js';

describe('message ids (service/message-ids.ts)', () => {
  it("uuidV5 is RFC 4122's name-based SHA-1 UUID: Python's uuid.uuid5 gives the same for the DNS namespace", () => {
    // python3 -c "import uuid; print(uuid.uuid5(uuid.NAMESPACE_DNS, 'python.org'))"
    const dns = Buffer.from('6ba7b8109dad11d180b400c04fd430c8', 'hex');
    expect(uuidV5('python.org', dns)).toBe('886313e1-3b8a-5372-9b90-0c9aee199e5d');
  });

  it("an answer's id is the same for the same request and name, whatever the request id's case, and differs otherwise", () => {
    const request = '5B0E2F4A-8C1D-4E7F-9A2B-3C4D5E6F7A8B';
    expect(answerId(request, 'delete.end')).toBe(answerId(request.toLowerCase(), 'delete.end'));
    expect(answerId(request, 'delete.end')).not.toBe(answerId(request, 'action.error'));
    expect(answerId(request, 'delete.end')).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });
});
