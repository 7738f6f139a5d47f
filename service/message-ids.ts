/**
 * Envelope ids that a service can compute again: the id of what answers a
 * request is a name-based UUID (RFC 4122 version 5, SHA-1) of the request's
 * own id and the answer's name. So a request redelivered after a crash gets
 * its answer again under the same id, and consumers drop the repeat by id
 * (docs/messages.md, "Idempotency"), without the service keeping a list of
 * what it answered.
 */
import { createHash } from 'node:crypto';

/** The namespace of novalet's answers (a fixed random UUID of its own). */
const NAMESPACE = Buffer.from('8a3c6e52f1b74d0e9c2a5b7d13e46f80', 'hex');

export function uuidV5(name: string, namespace: Buffer = NAMESPACE): string {
  const hash = createHash('sha1').update(namespace).update(name, 'utf8').digest();
  const bytes = hash.subarray(0, 16);
  bytes[6] = (bytes[6]! & 0x0f) | 0x50;
  bytes[8] = (bytes[8]! & 0x3f) | 0x80;
  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** The id of the message named `what` that answers the request whose envelope id is `requestId`. */
export function answerId(requestId: string, what: string): string {
  return uuidV5(`${requestId.toLowerCase()}/${what}`);
}
