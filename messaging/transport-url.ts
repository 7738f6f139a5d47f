import { maskSecretValue } from '../config/mask-credentials.js';
import { NovaletError } from '../config/novalet-error.js';
import { quoteForMessage } from '../config/quote-for-message.js';

/** One RabbitMQ node of `[DEFAULT] transport_url`, credentials and vhost decoded. */
export interface BrokerAddress {
  host: string;
  port: number;
  username: string;
  password: string;
  vhost: string;
}

/** oslo.messaging's value when transport_url is unset. */
export const DEFAULT_TRANSPORT_URL = 'rabbit://guest:guest@localhost:5672/';

const DEFAULT_PORT = 5672;

const REMEDY =
  'Write it as oslo.messaging reads it: rabbit://user:password@host:port[,user2:password2@host2:port2]/vhost ' +
  '(scheme rabbit; port 1 to 65535, 5672 when left out; an IPv6 address in brackets, [::1]:5672; ' +
  'special characters of a user, password or vhost percent-encoded, %2F for /; vhost / when left out).';

/**
 * `[DEFAULT] transport_url` as oslo.messaging's TransportURL.parse and its
 * RabbitMQ driver read it: several hosts make a cluster, tried in turn; a
 * host that names no credentials takes the previous host's (guest:guest for
 * the first); the path, percent-decoded, is the vhost (`/` when empty); the
 * query is ignored, as the RabbitMQ driver ignores it. null is oslo's
 * default, rabbit://guest:guest@localhost:5672/. Errors quote the URL with
 * its passwords masked and never quote a piece of its authority, where a
 * mistyped password could sit.
 */
export function parseTransportUrl(url: string | null): BrokerAddress[] {
  const text = url ?? DEFAULT_TRANSPORT_URL;
  const fail = (problem: string): never => {
    throw new NovaletError('TRANSPORT_URL_INVALID', `[DEFAULT] transport_url ${quoteForMessage(maskSecretValue(text))} is not valid: ${problem}.`, REMEDY);
  };

  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(text);
  if (!scheme) fail('it does not start with rabbit://');
  if (scheme![1]!.toLowerCase() !== 'rabbit') {
    fail(`the scheme is ${quoteForMessage(scheme![1]!)}, and novalet speaks only to RabbitMQ (rabbit://)`);
  }
  // As Python's urlparse: the authority ends at the first '/', '?' or '#'.
  const rest = text.slice(scheme![0].length);
  const authorityEnd = rest.search(/[/?#]/);
  const authority = authorityEnd < 0 ? rest : rest.slice(0, authorityEnd);
  const afterAuthority = authorityEnd < 0 ? '' : rest.slice(authorityEnd);
  const pathEnd = afterAuthority.search(/[?#]/);
  const path = pathEnd < 0 ? afterAuthority : afterAuthority.slice(0, pathEnd);
  const vhost = path.startsWith('/') && path.length > 1 ? unquote(path.slice(1)) : '/';

  // oslo's driver: no host at all is localhost with guest's credentials.
  if (authority === '') return [{ host: 'localhost', port: DEFAULT_PORT, username: 'guest', password: 'guest', vhost }];

  const entries = authority.split(',');
  const addresses: BrokerAddress[] = [];
  let username = 'guest';
  let password = 'guest';
  entries.forEach((entry, index) => {
    const nth = entries.length > 1 ? `host ${index + 1} of ${entries.length}` : 'the host';
    if (entry === '') fail(`${nth} is empty (two commas in a row, or a comma at an end)`);
    let hostPort = entry;
    const at = entry.lastIndexOf('@');
    if (at >= 0) {
      const userInfo = entry.slice(0, at);
      hostPort = entry.slice(at + 1);
      const colon = userInfo.indexOf(':');
      username = unquote(colon < 0 ? userInfo : userInfo.slice(0, colon));
      password = colon < 0 ? '' : unquote(userInfo.slice(colon + 1));
    }
    const { host, port } = splitHostPort(hostPort, nth, fail);
    addresses.push({ host, port, username, password, vhost });
  });
  return addresses;
}

function splitHostPort(text: string, nth: string, fail: (problem: string) => never): { host: string; port: number } {
  let host: string;
  let portText: string | null = null;
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close < 0) fail(`${nth} opens an IPv6 address with [ and does not close it`);
    host = text.slice(1, close);
    const after = text.slice(close + 1);
    if (after !== '') {
      if (!after.startsWith(':')) fail(`${nth} has text after its IPv6 address that is not :port`);
      portText = after.slice(1);
    }
    if (!/^[0-9A-Fa-f:.]+(%[A-Za-z0-9._-]+)?$/.test(host) || !host.includes(':')) fail(`${nth} is not an IPv6 address inside its brackets`);
  } else {
    const colons = text.split(':').length - 1;
    if (colons > 1) fail(`${nth} looks like an IPv6 address without brackets`);
    const colon = text.indexOf(':');
    host = colon < 0 ? text : text.slice(0, colon);
    if (colon >= 0) portText = text.slice(colon + 1);
    if (host === '') fail(`${nth} has no host name`);
    if (!/^[A-Za-z0-9._-]+$/.test(host)) fail(`${nth} has characters a host name cannot have (letters, digits, '.', '-' and '_' only)`);
  }
  let port = DEFAULT_PORT;
  if (portText !== null) {
    port = /^\d{1,5}$/.test(portText) ? Number(portText) : 0;
    if (port < 1 || port > 65535) fail(`the port of ${nth} is not a number from 1 to 65535`);
  }
  return { host, port };
}

/**
 * Python's urllib.parse.unquote: each run of %XX escapes is decoded as UTF-8
 * (invalid bytes become U+FFFD); a '%' not followed by two hex digits stays
 * as it is, so a password nova accepts is read the same here.
 */
function unquote(text: string): string {
  return text.replace(/(?:%[0-9A-Fa-f]{2})+/g, (run) => {
    const bytes = new Uint8Array(run.length / 3);
    for (let i = 0; i < bytes.length; i++) bytes[i] = parseInt(run.slice(i * 3 + 1, i * 3 + 3), 16);
    return new TextDecoder('utf-8', { fatal: false }).decode(bytes);
  });
}

/** `host:port` (`[v6]:port`) of a broker, never its credentials: what logs and messages name. */
export function describeAddress(a: BrokerAddress): string {
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}
