import type { LookupAddress } from 'node:dns';
import { lookup as dnsLookup } from 'node:dns/promises';
import type { LookupFunction } from 'node:net';
import { maskUrlCredentials } from '../../config/mask-credentials.js';
import type { ImportFilteringSection } from '../../config/novalet-config.js';
import { addressKey, CLASS_WORDS, ownAddressKeys, refusedClass } from './address-class.js';
import { ImageError } from './image-error.js';

/**
 * Which image URLs may be fetched: glance's `[import_filtering_opts]`
 * (validate_import_uri in glance/common/utils.py), then novalet's own rule
 * that a download never reaches this host, link-local addresses (the cloud
 * metadata service) or multicast unless allowed_hosts names the host — the
 * trial fetched the compute service's own /v1/host through an image URL.
 * Applied to the URL a build names and to every redirect it leads to.
 *
 * The address rule is decided on the addresses the name resolves to, once
 * per hop, and the connection is made to those addresses only
 * (pinnedLookup): a name that resolves to 127.0.0.1, or that answers one
 * address to the check and another to the connection (DNS rebinding), never
 * reaches the host. A refusal is decided before any connection is made, so
 * it says nothing about what listens where.
 *
 * glance's meaning, from its code (where its help differs, the code wins):
 * each of schemes, hosts and ports has an allowed and a disallowed list; a
 * non-empty allowed list refuses what it does not name and the disallowed
 * list of that kind is then ignored; otherwise the disallowed list refuses
 * what it names. A URL that names no port is not checked against the ports
 * (glance tests `if port and …`), so http://host/ passes allowed_ports =
 * 8080. Where novalet differs (each a refusal glance would let through, or a
 * spelling it would miss): every redirect is checked (glance checks only the
 * URL the user gave, then follows redirects unchecked); hosts are compared
 * as the URL parser that makes the connection reads them, so
 * http://2130706433/ and http://[::ffff:7f00:1]/ are 127.0.0.1 for
 * allowed_hosts and disallowed_hosts, and names are compared without case;
 * an IP address in disallowed_hosts also refuses a name that resolves to it;
 * schemes are compared without case.
 */

/** The options as the configuration holds them (config/novalet-config.ts). */
export type ImageUrlRules = ImportFilteringSection;

/** glance's defaults, for a cache made without a configuration. */
export const DEFAULT_IMAGE_URL_RULES: ImageUrlRules = {
  allowed_schemes: ['http', 'https'],
  disallowed_schemes: [],
  allowed_hosts: [],
  disallowed_hosts: [],
  allowed_ports: [80, 443],
  disallowed_ports: [],
};

/** What a name resolves to (dns.lookup with all: true), injectable for tests. */
export type Resolver = (host: string) => Promise<LookupAddress[]>;

/** Where names are resolved and which addresses are this host's; the system's unless a test gives its own. */
export interface AddressEnvironment {
  resolve: Resolver;
  /** This host's addresses, as addressKey() spells them. */
  ownAddresses: () => ReadonlySet<string>;
}

export const SYSTEM_ADDRESSES: AddressEnvironment = {
  // verbatim: the resolver's order; getaddrinfo, as a connection by name would use (/etc/hosts included).
  resolve: (host) => dnsLookup(host, { all: true, verbatim: true }),
  ownAddresses: ownAddressKeys,
};

const DEFAULT_PORTS: Record<string, number> = { http: 80, https: 443 };

/**
 * The port the URL's text names, as urllib.parse's `.port` reads it: null
 * when it names none. WHATWG's URL drops a scheme's default port
 * (http://x:80/ has port ''), which glance would still check; so the text
 * is read for it. A redirect without an authority (Location: /x) keeps the
 * port of the URL it came from (`inherited`).
 */
export function namedPortOf(text: string, url: URL, inherited: number | null = null): number | null {
  if (url.port !== '') return Number(url.port);
  const authority = /^[\s\x00-\x1f]*(?:[a-z][a-z0-9+.-]*:)?[\\/]{2}([^\\/?#]*)/i.exec(text.replace(/[\t\n\r]/g, ''));
  if (!authority) return /^[\s\x00-\x1f]*[a-z][a-z0-9+.-]*:/i.test(text) ? null : inherited;
  const hostPort = authority[1]!.slice(authority[1]!.lastIndexOf('@') + 1);
  const afterHost = hostPort.startsWith('[') ? hostPort.slice(hostPort.indexOf(']') + 1) : hostPort;
  const port = /:(\d+)$/.exec(afterHost);
  return port ? Number(port[1]) : null;
}

/** A host as the connection would read it: an IP address in one spelling, a name lower-cased and IDNA-encoded. */
export function hostKey(host: string): string {
  const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  const ip = addressKey(bare);
  if (ip !== null) return ip;
  try {
    const parsed = new URL(`http://${bare.includes(':') ? `[${bare}]` : bare}/`);
    // An entry with a port, a path or user info is no host; it matches nothing rather than something broader.
    if (parsed.port === '' && parsed.pathname === '/' && parsed.username === '') {
      const name = parsed.hostname.replace(/^\[|\]$/g, '');
      return addressKey(name) ?? name;
    }
  } catch {
    // Not a host a URL can hold: compared as written.
  }
  return bare.toLowerCase();
}

function portList(ports: readonly number[]): string {
  return ports.length === 0 ? 'none' : ports.join(', ');
}

/**
 * glance's validate_import_uri on a parsed URL: why it is refused, or null.
 * `namedPort` is the port its text names (namedPortOf), null for none.
 */
export function filteringRefusal(url: URL, rules: ImageUrlRules, namedPort: number | null): string | null {
  const scheme = url.protocol.replace(/:$/, '').toLowerCase();
  const allowedSchemes = rules.allowed_schemes.map((s) => s.toLowerCase());
  if (!scheme) return 'it has no scheme';
  if (allowedSchemes.length > 0) {
    if (!allowedSchemes.includes(scheme)) return `its scheme ${scheme} is not in allowed_schemes (${allowedSchemes.join(', ')})`;
  } else if (rules.disallowed_schemes.some((s) => s.toLowerCase() === scheme)) {
    return `its scheme ${scheme} is in disallowed_schemes`;
  }
  const host = url.hostname;
  if (!host) return 'it has no host';
  const key = hostKey(host);
  // The lists' contents are not repeated: the fault goes to whoever sent the build.
  if (rules.allowed_hosts.length > 0) {
    if (!rules.allowed_hosts.some((h) => hostKey(h) === key)) return `its host ${host} is not in allowed_hosts`;
  } else if (rules.disallowed_hosts.some((h) => hostKey(h) === key)) {
    return `its host ${host} is in disallowed_hosts`;
  }
  if (namedPort) {
    if (rules.allowed_ports.length > 0) {
      if (!rules.allowed_ports.includes(namedPort)) return `its port ${namedPort} is not in allowed_ports (${portList(rules.allowed_ports)})`;
    } else if (rules.disallowed_ports.includes(namedPort)) {
      return `its port ${namedPort} is in disallowed_ports`;
    }
  }
  return null;
}

/** True when allowed_hosts names the URL's host: the operator means it, whatever its addresses. */
export function namedByAllowedHosts(url: URL, rules: ImageUrlRules): boolean {
  const key = hostKey(url.hostname);
  return rules.allowed_hosts.some((h) => hostKey(h) === key);
}

/** A URL checked and the addresses a connection to it may use (all of them checked). */
export interface CheckedTarget {
  url: URL;
  /** The port a connection goes to. */
  port: number;
  addresses: LookupAddress[];
}

export interface CheckOptions {
  /** The port the URL's text names (namedPortOf); url.port's unless given. */
  namedPort?: number | null;
  /** The URL (masked) that redirected here, for the message; null for the URL a build names. */
  via?: string | null;
  env?: AddressEnvironment;
  /** Stops waiting for DNS. */
  signal?: AbortSignal;
}

function bareHost(url: URL): string {
  return url.hostname.replace(/^\[|\]$/g, '');
}

async function resolveOnce(resolve: Resolver, host: string, signal?: AbortSignal): Promise<LookupAddress[]> {
  if (!signal) return resolve(host);
  signal.throwIfAborted();
  let onAbort: () => void = () => undefined;
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
  });
  try {
    return await Promise.race([resolve(host), aborted]);
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
}

/**
 * Checks `url` against the rules and resolves its host, once: the
 * addresses returned are the only ones a connection may use (pinnedLookup).
 * Refusals are ImageErrors IMAGE_URL_REFUSED; a name that does not resolve
 * is IMAGE_DOWNLOAD_FAILED. Nothing is connected to.
 */
export async function checkImageUrl(url: URL, rules: ImageUrlRules, options: CheckOptions = {}): Promise<CheckedTarget> {
  const env = options.env ?? SYSTEM_ADDRESSES;
  const shown = maskUrlCredentials(url.href);
  const opening = options.via ? `The image URL ${options.via} redirects to ${shown}, which is refused` : `The image URL ${shown} is refused`;
  const namedPort = options.namedPort === undefined ? (url.port === '' ? null : Number(url.port)) : options.namedPort;
  const glance = filteringRefusal(url, rules, namedPort);
  if (glance !== null) {
    throw new ImageError('IMAGE_URL_REFUSED', `${opening} by [import_filtering_opts]: ${glance}.`, 'Give a URL those rules allow, or change [import_filtering_opts] in the configuration.');
  }
  const host = bareHost(url);
  const port = url.port === '' ? DEFAULT_PORTS[url.protocol.replace(/:$/, '')] ?? 0 : Number(url.port);
  const named = namedByAllowedHosts(url, rules);
  const refuse = (what: string): ImageError =>
    new ImageError(
      'IMAGE_URL_REFUSED',
      `${opening}: ${what}, which image downloads never reach unless [import_filtering_opts] allowed_hosts names the host.`,
      'Give the URL of an image server elsewhere.',
    );
  const literal = addressKey(host) !== null;
  let addresses: LookupAddress[];
  if (literal) {
    addresses = [{ address: host, family: host.includes(':') ? 6 : 4 }];
  } else {
    try {
      addresses = await resolveOnce(env.resolve, host, options.signal);
    } catch (err) {
      if (options.signal?.aborted) throw options.signal.reason;
      const code = (err as NodeJS.ErrnoException).code;
      const why = code === 'EAI_AGAIN' ? `could not be resolved now (EAI_AGAIN: DNS did not answer)` : `does not resolve (${code ?? (err as Error).message})`;
      throw new ImageError('IMAGE_DOWNLOAD_FAILED', `The image ${shown} could not be downloaded: the host name ${host} ${why}.`, 'Check the URL and the DNS of this host.');
    }
    if (addresses.length === 0) {
      throw new ImageError('IMAGE_DOWNLOAD_FAILED', `The image ${shown} could not be downloaded: the host name ${host} resolves to no address.`, 'Check the URL and the DNS of this host.');
    }
  }
  if (!named) {
    const own = env.ownAddresses();
    const disallowed = new Set(rules.allowed_hosts.length > 0 ? [] : rules.disallowed_hosts.map(hostKey));
    // Every address is checked: a name with one bad address among good ones is refused, whichever a connection would try first.
    for (const { address } of addresses) {
      const kind = refusedClass(address, own);
      // The address itself is not said for a name: the fault goes to whoever sent the build, and need not map this host's DNS for them.
      if (kind !== null) throw refuse(literal ? `its host ${url.hostname} is ${CLASS_WORDS[kind]}` : `its host ${host} resolves to ${CLASS_WORDS[kind]}`);
      if (!literal && disallowed.has(addressKey(address)!)) {
        throw new ImageError('IMAGE_URL_REFUSED', `${opening} by [import_filtering_opts]: its host ${host} resolves to an address in disallowed_hosts.`, 'Give a URL those rules allow, or change [import_filtering_opts] in the configuration.');
      }
    }
  }
  return { url, port, addresses };
}

/**
 * A `lookup` for http(s).request that answers only the checked addresses of
 * `host`, without asking DNS again: the connection goes where the check
 * looked. (An IP-literal host is connected to without a lookup.)
 */
export function pinnedLookup(host: string, addresses: readonly LookupAddress[]): LookupFunction {
  return ((hostname: string, options: { all?: boolean; family?: number | string }, callback: (...args: unknown[]) => void) => {
    const family = options?.family === 'IPv4' ? 4 : options?.family === 'IPv6' ? 6 : Number(options?.family ?? 0);
    const usable = hostname === host ? addresses.filter((a) => !family || a.family === family) : [];
    if (usable.length === 0) {
      // getaddrinfo's errno for a name without an address (not a novalet code).
      const err: NodeJS.ErrnoException = new Error(`${hostname} was not among the checked hosts`);
      err.code = 'ENOTFOUND';
      process.nextTick(callback, err, options?.all ? [] : undefined, undefined);
      return;
    }
    if (options?.all) process.nextTick(callback, null, usable.map((a) => ({ ...a })));
    else process.nextTick(callback, null, usable[0]!.address, usable[0]!.family);
  }) as LookupFunction;
}
