import type { LookupAddress } from 'node:dns';
import { describe, expect, it } from 'vitest';
import { addressKey, ownAddressKeys, refusedClass } from '../../hypervisor/instance/address-class.js';
import { ImageError } from '../../hypervisor/instance/image-error.js';
import {
  checkImageUrl,
  DEFAULT_IMAGE_URL_RULES,
  filteringRefusal,
  namedPortOf,
  pinnedLookup,
  type AddressEnvironment,
  type ImageUrlRules,
} from '../../hypervisor/instance/image-url-rules.js';

/**
 * The image URL rules on their own: glance's validate_import_uri, the
 * address classes, and the check after resolution with an injected
 * resolver. Nothing here connects anywhere: an address the rules refuse is
 * refused by the rule, never by a fetch that would leave this machine were
 * the rule wrong (image-url-loopback.test.ts fetches, on loopback only).
 */

const rules = (over: Partial<ImageUrlRules> = {}): ImageUrlRules => ({ ...DEFAULT_IMAGE_URL_RULES, ...over });

/** glance's answer: true when the URL passes (the port as urllib.parse reads it from the text). */
function passes(text: string, over: Partial<ImageUrlRules> = {}): boolean {
  const url = new URL(text);
  return filteringRefusal(url, rules(over), namedPortOf(text, url)) === null;
}

describe("glance's validate_import_uri", () => {
  it("passes and refuses as glance's own tests do (glance/tests/unit/common/test_utils.py ImportURITestCase)", () => {
    expect(passes('http://foo.com')).toBe(true);
    expect(passes('http://example.com', { allowed_schemes: ['http'], allowed_hosts: ['example.com'] })).toBe(true);
    expect(passes('http://example.com:8080', { allowed_schemes: ['http'], allowed_hosts: ['example.com'], allowed_ports: [8080] })).toBe(true);
    // The default allowed_schemes (http, https) already refuses ftp, disallowed or not.
    expect(passes('ftp://example.com', { disallowed_schemes: ['ftp'] })).toBe(false);
    expect(passes('ftp://foo.com', { disallowed_schemes: ['ftp'], disallowed_hosts: ['foo.com'] })).toBe(false);
    expect(passes('http://localhost:8484', { disallowed_ports: [8484] })).toBe(false);
  });

  it('a non-empty allowed list makes the disallowed list of its kind ignored (test_ignored_filtering_options)', () => {
    expect(passes('ftp://foo.com', { allowed_schemes: ['https', 'ftp'], disallowed_schemes: ['ftp'] })).toBe(true);
    expect(passes('http://foo.com', { allowed_hosts: ['example.com', 'foo.com'], disallowed_hosts: ['foo.com'] })).toBe(true);
    expect(passes('http://foo.com:8484', { allowed_ports: [8484], disallowed_ports: [8484] })).toBe(true);
  });

  it('an empty allowed list lets the disallowed one refuse; otherwise what the allowed list does not name is refused', () => {
    expect(passes('ftp://foo.com', { allowed_schemes: [] })).toBe(true);
    expect(passes('ftp://foo.com', { allowed_schemes: [], disallowed_schemes: ['ftp'] })).toBe(false);
    expect(passes('http://bar.com', { allowed_hosts: ['foo.com'] })).toBe(false);
    expect(passes('http://bar.com', { disallowed_hosts: ['bar.com'] })).toBe(false);
    expect(passes('http://bar.com:8080')).toBe(false);
    expect(passes('http://bar.com:8080', { allowed_ports: [] })).toBe(true);
  });

  it('checks only a port the URL names (glance: `if port and …`), a default one written out included', () => {
    expect(passes('http://example.com/', { allowed_ports: [8080] })).toBe(true);
    expect(passes('https://example.com/x', { allowed_ports: [8080] })).toBe(true);
    // WHATWG's URL drops :80 from http; urllib.parse keeps it, and glance checks it.
    expect(passes('http://example.com:80/', { allowed_ports: [443] })).toBe(false);
    expect(passes('http://example.com:80/', { allowed_ports: [80] })).toBe(true);
    expect(passes('http://user:p:w@example.com:80/', { allowed_ports: [443] })).toBe(false);
    expect(passes('http://[2001:db8::1]:80/', { allowed_ports: [443] })).toBe(false);
    expect(passes('http://[2001:db8::1]/', { allowed_ports: [443] })).toBe(true);
  });

  it('reads the port a redirect names, or keeps the one of the URL it came from when it names no authority', () => {
    const base = new URL('http://example.com:80/a');
    expect(namedPortOf('/b', new URL('/b', base), 80)).toBe(80);
    expect(namedPortOf('//other.example/b', new URL('//other.example/b', base), 80)).toBeNull();
    expect(namedPortOf('http://other.example:80/b', new URL('http://other.example:80/b'), null)).toBe(80);
    expect(namedPortOf('https://other.example:8443/b', new URL('https://other.example:8443/b'), 80)).toBe(8443);
  });

  it('compares hosts as the connection reads them: other spellings of an address, and names without case', () => {
    for (const spelling of ['http://2130706433/', 'http://0x7f.0.0.1/', 'http://127.1/', 'http://[::ffff:127.0.0.1]/', 'http://[::ffff:7f00:1]/']) {
      expect(passes(spelling, { disallowed_hosts: ['127.0.0.1'] }), spelling).toBe(false);
      expect(passes(spelling, { allowed_hosts: ['127.0.0.1'] }), spelling).toBe(true);
    }
    expect(passes('http://IMAGES.Example/x', { allowed_hosts: ['images.example'] })).toBe(true);
    expect(passes('http://images.example/x', { allowed_hosts: ['Images.EXAMPLE'] })).toBe(true);
    expect(passes('http://[::1]/x', { allowed_hosts: ['::1'] })).toBe(true);
    expect(passes('http://[::1]/x', { allowed_hosts: ['[::1]'] })).toBe(true);
    // An entry with a port is no host: it names nothing, not the host without its port.
    expect(passes('http://images.example/x', { allowed_hosts: ['images.example:8080'] })).toBe(false);
  });

  it('says which rule refused, without repeating the host lists', () => {
    const refusal = (text: string, over: Partial<ImageUrlRules>): string | null => filteringRefusal(new URL(text), rules(over), namedPortOf(text, new URL(text)));
    expect(refusal('ftp://x.example/', {})).toBe('its scheme ftp is not in allowed_schemes (http, https)');
    expect(refusal('http://x.example/', { allowed_hosts: ['secret-mirror.internal'] })).toBe('its host x.example is not in allowed_hosts');
    expect(refusal('http://x.example/', { disallowed_hosts: ['x.example'] })).toBe('its host x.example is in disallowed_hosts');
    expect(refusal('http://x.example:8080/', {})).toBe('its port 8080 is not in allowed_ports (80, 443)');
    expect(refusal('http://x.example:22/', { allowed_ports: [], disallowed_ports: [22] })).toBe('its port 22 is in disallowed_ports');
  });
});

describe('address classes', () => {
  const own = new Set([addressKey('192.0.2.2')!, addressKey('fd00::2')!]);
  it.each([
    ['127.0.0.1', 'loopback'],
    ['127.255.255.254', 'loopback'],
    ['::1', 'loopback'],
    ['0:0:0:0:0:0:0:1', 'loopback'],
    ['169.254.169.254', 'link-local'],
    ['169.254.0.1', 'link-local'],
    ['fe80::1', 'link-local'],
    ['fe80::1%eth0', 'link-local'],
    ['febf::1', 'link-local'],
    ['0.0.0.0', 'unspecified'],
    ['0.1.2.3', 'unspecified'],
    ['::', 'unspecified'],
    ['224.0.0.1', 'multicast'],
    ['239.255.255.250', 'multicast'],
    ['ff02::1', 'multicast'],
    ['255.255.255.255', 'broadcast'],
    ['::ffff:127.0.0.1', 'loopback'],
    ['::ffff:7f00:1', 'loopback'],
    ['::FFFF:169.254.169.254', 'link-local'],
    ['0:0:0:0:0:ffff:a9fe:a9fe', 'link-local'],
    ['::127.0.0.1', 'loopback'],
    ['::ffff:0.0.0.0', 'unspecified'],
    ['192.0.2.2', 'this host'],
    ['::ffff:192.0.2.2', 'this host'],
    ['fd00:0::2', 'this host'],
  ])('%s is refused as %s', (address, kind) => {
    expect(refusedClass(address, own)).toBe(kind);
  });

  it.each(['10.0.0.1', '172.16.5.4', '192.168.1.10', '192.0.2.3', '198.51.100.7', '2001:db8::1', 'fd00::3', 'fec0::1', '::ffff:10.0.0.1'])('%s is not refused', (address) => {
    expect(refusedClass(address, own)).toBeNull();
  });

  it("knows this host's own addresses from its interfaces", () => {
    const keys = ownAddressKeys();
    expect(keys.has(addressKey('127.0.0.1')!)).toBe(true);
    expect(keys.size).toBeGreaterThan(0);
  });
});

/** A resolver answering from a table, counting its calls; nothing asks DNS. */
function resolverOf(table: Record<string, string[]>): AddressEnvironment & { calls: string[] } {
  const calls: string[] = [];
  return {
    calls,
    resolve: async (host) => {
      calls.push(host);
      const answers = table[host];
      if (!answers) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
      return answers.map((address): LookupAddress => ({ address, family: address.includes(':') ? 6 : 4 }));
    },
    ownAddresses: () => new Set([addressKey('192.0.2.2')!]),
  };
}

async function refusedBy(url: string, over: Partial<ImageUrlRules>, env: AddressEnvironment, via?: string): Promise<ImageError> {
  const err = await checkImageUrl(new URL(url), rules(over), { env, via: via ?? null }).then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ImageError);
  return err as ImageError;
}

describe('the check after resolution (an injected resolver)', () => {
  const env = resolverOf({
    'metadata.example': ['169.254.169.254'],
    'sneaky.example': ['203.0.113.10', '127.0.0.1'],
    'self.example': ['192.0.2.2'],
    'v6-loopback.example': ['::1'],
    'mapped.example': ['::ffff:169.254.169.254'],
    'images.example': ['203.0.113.10', '2001:db8::10'],
    'banned-address.example': ['203.0.113.66'],
    'nothing.example': [],
  });

  it('refuses a name that resolves to the metadata service, without saying the address', async () => {
    const err = await refusedBy('http://metadata.example/latest/meta-data/', {}, env);
    expect(err.code).toBe('IMAGE_URL_REFUSED');
    expect(err.message).toBe(
      'The image URL http://metadata.example/latest/meta-data/ is refused: its host metadata.example resolves to a link-local address (the cloud metadata service, 169.254.169.254, is one), which image downloads never reach unless [import_filtering_opts] allowed_hosts names the host. Give the URL of an image server elsewhere.',
    );
  });

  it('refuses a name when any of its addresses is refused, whichever a connection would try', async () => {
    expect((await refusedBy('http://sneaky.example/', {}, env)).message).toContain('its host sneaky.example resolves to a loopback address');
    expect((await refusedBy('http://self.example/', {}, env)).message).toContain('resolves to an address of this host');
    expect((await refusedBy('http://v6-loopback.example/', {}, env)).message).toContain('resolves to a loopback address');
    expect((await refusedBy('http://mapped.example/', {}, env)).message).toContain('resolves to a link-local address');
  });

  it('refuses address literals without asking DNS', async () => {
    const calls = env.calls.length;
    for (const [url, words] of [
      ['http://169.254.169.254/latest/meta-data/', 'is a link-local address'],
      ['http://[::ffff:a9fe:a9fe]/', 'is a link-local address'],
      ['http://[fe80::1]/', 'is a link-local address'],
      ['http://0.0.0.0/', 'is an unspecified address'],
      ['http://[::]/', 'is an unspecified address'],
      ['http://2130706433/', 'its host 127.0.0.1 is a loopback address'],
      ['http://224.0.0.251/', 'is a multicast address'],
      ['http://192.0.2.2/', 'is an address of this host'],
    ] as const) {
      const err = await refusedBy(url, {}, env);
      expect(err.code, url).toBe('IMAGE_URL_REFUSED');
      expect(err.message, url).toContain(words);
    }
    expect(env.calls.length).toBe(calls);
  });

  it('lets allowed_hosts name a host the address rule would refuse: the operator means it', async () => {
    const target = await checkImageUrl(new URL('http://metadata.example/x'), rules({ allowed_hosts: ['metadata.example'] }), { env });
    expect(target.addresses).toEqual([{ address: '169.254.169.254', family: 4 }]);
    const literal = await checkImageUrl(new URL('http://127.0.0.1:8080/x'), rules({ allowed_hosts: ['127.0.0.1'], allowed_ports: [] }), { env });
    expect(literal).toMatchObject({ port: 8080, addresses: [{ address: '127.0.0.1', family: 4 }] });
  });

  it('passes a name whose addresses are all reachable, and returns them for the connection', async () => {
    const target = await checkImageUrl(new URL('https://images.example/cirros.qcow2'), rules(), { env });
    expect(target.port).toBe(443);
    expect(target.addresses.map((a) => a.address)).toEqual(['203.0.113.10', '2001:db8::10']);
  });

  it('lets an address in disallowed_hosts refuse a name that resolves to it', async () => {
    const err = await refusedBy('http://banned-address.example/', { disallowed_hosts: ['203.0.113.66'] }, env);
    expect(err.message).toContain('by [import_filtering_opts]: its host banned-address.example resolves to an address in disallowed_hosts.');
  });

  it('names the redirect that led to a refused URL', async () => {
    const err = await refusedBy('http://metadata.example/x', {}, env, 'http://images.example/cirros.qcow2');
    expect(err.message).toMatch(/^The image URL http:\/\/images.example\/cirros.qcow2 redirects to http:\/\/metadata.example\/x, which is refused: its host metadata.example resolves to a link-local address/);
  });

  it('checks glance’s rules before resolving', async () => {
    const calls = env.calls.length;
    const err = await refusedBy('http://images.example:8080/', {}, env);
    expect(err.message).toBe(
      'The image URL http://images.example:8080/ is refused by [import_filtering_opts]: its port 8080 is not in allowed_ports (80, 443). Give a URL those rules allow, or change [import_filtering_opts] in the configuration.',
    );
    expect(env.calls.length).toBe(calls);
  });

  it('says a name that does not resolve as a download failure', async () => {
    for (const host of ['unknown.example', 'nothing.example']) {
      const err = await refusedBy(`http://${host}/x`, {}, env);
      expect(err.code).toBe('IMAGE_DOWNLOAD_FAILED');
      expect(err.message).toContain(`the host name ${host}`);
    }
  });
});

describe('the lookup a connection uses', () => {
  const addresses: LookupAddress[] = [
    { address: '203.0.113.10', family: 4 },
    { address: '2001:db8::10', family: 6 },
  ];
  const lookup = pinnedLookup('images.example', addresses);
  const ask = (host: string, options: object): Promise<unknown[]> => new Promise((resolve) => (lookup as (...a: unknown[]) => void)(host, options, (...answer: unknown[]) => resolve(answer)));

  it('answers the checked addresses only, never asking DNS again', async () => {
    expect(await ask('images.example', { all: true })).toEqual([null, addresses]);
    expect(await ask('images.example', {})).toEqual([null, '203.0.113.10', 4]);
    expect(await ask('images.example', { family: 6 })).toEqual([null, '2001:db8::10', 6]);
    expect(await ask('images.example', { all: true, family: 'IPv4' })).toEqual([null, [addresses[0]]]);
  });

  it('answers nothing for any other name', async () => {
    const [err] = await ask('rebound.example', { all: true });
    expect(err).toMatchObject({ code: 'ENOTFOUND' });
  });
});
