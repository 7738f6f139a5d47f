import { isIP } from 'node:net';
import { networkInterfaces } from 'node:os';

/**
 * Which IP addresses an image download never reaches (image-url-rules.ts):
 * the host itself (loopback, the unspecified address, which Linux connects
 * to itself, and every address of its interfaces), link-local ones (the
 * cloud metadata service at 169.254.169.254 among them), multicast and
 * broadcast. IPv6 forms that carry an IPv4 address (::ffff:a.b.c.d, the
 * deprecated ::a.b.c.d) are judged by the IPv4 address they carry, since the
 * kernel connects to that. Private ranges (10/8, 172.16/12, 192.168/16,
 * fc00::/7) are not refused: image servers live there.
 */

export type AddressClass = 'loopback' | 'link-local' | 'unspecified' | 'multicast' | 'broadcast' | 'this host';

/** Each class as a phrase for a sentence ("… is a loopback address"). */
export const CLASS_WORDS: Record<AddressClass, string> = {
  loopback: 'a loopback address',
  'link-local': 'a link-local address (the cloud metadata service, 169.254.169.254, is one)',
  unspecified: 'an unspecified address (0.0.0.0/8 or ::, which reach this host)',
  multicast: 'a multicast address',
  broadcast: 'the broadcast address',
  'this host': 'an address of this host',
};

/** The 4 bytes of a dotted IPv4 address (as isIP accepts it: four decimal parts). */
function ipv4Bytes(text: string): number[] {
  return text.split('.').map(Number);
}

/** The 16 bytes of an IPv6 address as isIP accepts it (a zone `%eth0` already removed). */
function ipv6Bytes(text: string): number[] {
  let body = text;
  const tail: number[] = [];
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(body);
  if (dotted) {
    tail.push(...ipv4Bytes(dotted[1]!));
    body = body.slice(0, -dotted[1]!.length);
    // "::1.2.3.4" leaves "::", "::ffff:1.2.3.4" leaves "::ffff:"; a group must follow a lone colon.
    if (body.endsWith(':') && !body.endsWith('::')) body = body.slice(0, -1);
  }
  const groups = (part: string): number[] => (part === '' ? [] : part.split(':').map((g) => parseInt(g, 16)));
  const [head, rest] = body.includes('::') ? body.split('::') : [body, undefined];
  const left = groups(head!);
  const right = rest === undefined ? [] : groups(rest);
  const missing = 8 - tail.length / 2 - left.length - right.length;
  const words = [...left, ...Array<number>(rest === undefined ? 0 : missing).fill(0), ...right];
  return [...words.flatMap((w) => [w >> 8, w & 0xff]), ...tail];
}

/**
 * An address as the kernel would reach it: an IPv4 address dotted, or an
 * IPv6 one as 16 bytes; IPv4-mapped and IPv4-compatible IPv6 become their
 * IPv4 address. null for text that is not an IP address.
 */
export function canonicalAddress(text: string): { v4: number[] } | { v6: number[] } | null {
  const bare = text.startsWith('[') && text.endsWith(']') ? text.slice(1, -1) : text;
  const unzoned = bare.replace(/%.*$/, '');
  const version = isIP(unzoned);
  if (version === 4) return { v4: ipv4Bytes(unzoned) };
  if (version !== 6) return null;
  const bytes = ipv6Bytes(unzoned.toLowerCase());
  const zeros = (from: number, to: number): boolean => bytes.slice(from, to).every((b) => b === 0);
  if (zeros(0, 10) && bytes[10] === 0xff && bytes[11] === 0xff) return { v4: bytes.slice(12) };
  // ::a.b.c.d (deprecated IPv4-compatible), but not :: and ::1, which are IPv6's own.
  if (zeros(0, 12) && !zeros(12, 15)) return { v4: bytes.slice(12) };
  return { v6: bytes };
}

/** One spelling per address, to compare addresses written differently (::FFFF:127.0.0.1 and 127.0.0.1). */
export function addressKey(text: string): string | null {
  const address = canonicalAddress(text);
  if (address === null) return null;
  return 'v4' in address ? address.v4.join('.') : address.v6.map((b) => b.toString(16).padStart(2, '0')).join('');
}

/** The addresses of this host's interfaces, as addressKey spells them. */
export function ownAddressKeys(): Set<string> {
  const keys = new Set<string>();
  for (const list of Object.values(networkInterfaces())) {
    for (const entry of list ?? []) {
      const key = addressKey(entry.address);
      if (key !== null) keys.add(key);
    }
  }
  return keys;
}

/**
 * The class of `text` that downloads never reach, or null for an address
 * they may reach (or for text that is not an IP address). `own` holds this
 * host's addresses (ownAddressKeys()).
 */
export function refusedClass(text: string, own: ReadonlySet<string>): AddressClass | null {
  const address = canonicalAddress(text);
  if (address === null) return null;
  if ('v4' in address) {
    const [a, b] = address.v4 as [number, number, number, number];
    if (a === 127) return 'loopback';
    if (a === 0) return 'unspecified';
    if (a === 169 && b === 254) return 'link-local';
    if (a >= 224 && a <= 239) return 'multicast';
    if (address.v4.every((x) => x === 255)) return 'broadcast';
  } else {
    const bytes = address.v6;
    const allZeroBut = (last: number): boolean => bytes.slice(0, 15).every((x) => x === 0) && bytes[15] === last;
    if (allZeroBut(1)) return 'loopback';
    if (allZeroBut(0)) return 'unspecified';
    if (bytes[0] === 0xfe && (bytes[1]! & 0xc0) === 0x80) return 'link-local';
    if (bytes[0] === 0xff) return 'multicast';
  }
  return own.has(addressKey(text)!) ? 'this host' : null;
}
