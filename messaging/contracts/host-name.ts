/**
 * A compute host's name as the bus carries it: in the routing key
 * `compute.<host>`, the queue `novalet.compute.<host>`, the report key
 * `host.<host>.report`, `request.alternates` and faults. Letters, digits and
 * `.`, `_`, `:`, `-` only (a host name, an FQDN, an IPv4 or IPv6 address),
 * so that no name is an AMQP wildcard (`*`, `#`) or needs quoting; at most
 * 239 characters, so that `novalet.compute.<host>` fits AMQP's 255-byte
 * limit on queue names.
 */

export const MAX_HOST_NAME_LENGTH = 255 - 'novalet.compute.'.length;

export const HOST_NAME_PATTERN = /^[A-Za-z0-9._:-]+$/;

export function isHostName(value: unknown): value is string {
  return typeof value === 'string' && value.length >= 1 && value.length <= MAX_HOST_NAME_LENGTH && HOST_NAME_PATTERN.test(value);
}
