/**
 * Hiding secrets: the password inside a URL (transport_url and the like)
 * becomes `***`, so `rabbit://nova:s3cret@rmq1:5672/` is shown as
 * `rabbit://nova:***@rmq1:5672/`. Multi-host oslo.messaging URLs
 * (`rabbit://a:p@h1,b:q@h2/`) have every password masked. When in doubt the
 * mask covers more rather than less: a password containing `@` or `/` never
 * leaks; at worst part of the address is hidden too.
 */

export const MASK = '***';

const SCHEME = /^([A-Za-z][A-Za-z0-9+.-]*:\/\/)/;

/** Mask the password of every `user:password@` in a URL; text that is not a URL is returned unchanged. */
export function maskUrlCredentials(url: string): string {
  const scheme = SCHEME.exec(url);
  if (!scheme) return url;
  const rest = url.slice(scheme[1]!.length);
  const lastAt = rest.lastIndexOf('@');
  if (lastAt < 0) return url;
  // The authority ends at the first '/', '?' or '#' after the last '@', so
  // a '/' inside a password cannot end it early.
  const afterLastAt = rest.slice(lastAt).search(/[/?#]/);
  const authorityEnd = afterLastAt < 0 ? rest.length : lastAt + afterLastAt;
  const pieces = rest.slice(0, authorityEnd).split('@');
  return scheme[1]! + maskAuthority(pieces) + rest.slice(authorityEnd);
}

/**
 * `pieces` is the authority split at '@'. Piece 0 is user info; every later
 * piece but the last is `hostport,next-userinfo` (or, without a comma, more
 * of a password that contained '@'); the last piece is the final host.
 */
function maskAuthority(pieces: string[]): string {
  let result = maskUserInfo(pieces[0]!);
  for (let i = 1; i < pieces.length; i++) {
    const piece = pieces[i]!;
    if (i === pieces.length - 1) {
      result += '@' + piece;
      break;
    }
    const comma = piece.indexOf(',');
    if (comma < 0) continue; // more of a password containing '@': stays masked
    result += '@' + piece.slice(0, comma + 1) + maskUserInfo(piece.slice(comma + 1));
  }
  return result;
}

function maskUserInfo(userInfo: string): string {
  const colon = userInfo.indexOf(':');
  if (colon < 0) return userInfo;
  return `${userInfo.slice(0, colon)}:${MASK}`;
}

/**
 * How a secret option's value is shown anywhere novalet prints it: a URL
 * with its passwords masked, anything else entirely `***`.
 */
export function maskSecretValue(value: string): string {
  const scheme = SCHEME.exec(value);
  if (!scheme) return MASK;
  const masked = maskUrlCredentials(value);
  // A URL that does not read as one (a ':' typed as '!', a truncated host
  // list) may have its password where a user or host should be: all of its
  // authority is masked then.
  return wellFormedAuthority(masked.slice(scheme[1]!.length)) ? masked : `${scheme[1]!}${MASK}`;
}

/**
 * `user:***@host:port`, `user@host`, `host:port` or `[v6]:port`,
 * comma-separated, and nothing else; `$name` references are allowed, as a
 * raw value in an error shows them.
 */
const AUTHORITY_ENTRY = /^(?:[A-Za-z0-9._~%${}-]*(?::\*\*\*)?@)?(?:[A-Za-z0-9._${}-]*|\[[0-9A-Fa-f:.]+\])(?::(?:\d*|\$\{?[A-Za-z0-9._]+\}?))?$/;

function wellFormedAuthority(rest: string): boolean {
  const end = rest.search(/[/?#]/);
  return (end < 0 ? rest : rest.slice(0, end)).split(',').every((entry) => AUTHORITY_ENTRY.test(entry));
}

/**
 * Whether an option novalet does not know holds a secret, judged as
 * oslo.config's `secret=True` options are named (keystone_authtoken's
 * password, rabbit_password, metadata_proxy_shared_secret, auth tokens) or
 * by a password inside a URL ([database] connection). It decides only how
 * text taken from it through `$name` is shown: when in doubt, masked.
 */
export function looksSecret(name: string, value: string): boolean {
  return /pass(?:word|wd)?(?:$|_)|secret|token|credential|private_key|api_key/i.test(name) || maskUrlCredentials(value) !== value;
}

const URL_IN_TEXT = /[A-Za-z][A-Za-z0-9+.-]*:\/\/[^\s'"]*/g;

/**
 * Every URL password within free text masked, wherever the URL sits: a
 * line that a stray indent joined to the value above (`10\n  transport_url =
 * rabbit://nova:pw@…`) or a connection_uri with a password. Applied to
 * every configuration error message and shown value, secret or not.
 */
export function maskCredentialsInText(text: string): string {
  return text.includes('://') ? text.replace(URL_IN_TEXT, (url) => maskUrlCredentials(url)) : text;
}
