/**
 * The bearer token of a novalet HTTP API ([api] auth, [api] auth_token_file).
 *
 * `auth = token` (the default): the token is the one line of
 * `auth_token_file` (default `$state_path/api-token`). At the first start
 * the file is missing and is made, mode 0600, with 256 random bits; after
 * that it is read as it is, so an operator may put a token of their own in
 * it. A file that others could read or change is refused, as OpenSSH
 * refuses a private key with any group or other permission bit: a token
 * another user can read is a token that user can use, and one they can
 * write is one they can choose. The token is compared in constant time and
 * never reaches a log line or an error message.
 *
 * `auth = none` turns the check off, with a WARN at every start.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { constants } from 'node:fs';
import { link, mkdir, open, unlink } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from '../config/logger.js';
import type { ApiSection } from '../config/novalet-config.js';
import { NovaletError } from '../config/novalet-error.js';
import { quoteForMessage } from '../config/quote-for-message.js';

export type ApiAuth = { mode: 'token'; token: string } | { mode: 'none'; token: null };

/** The shortest token taken from a file: 128 bits written as hex (`openssl rand -hex 16`). */
export const TOKEN_MIN_LENGTH = 32;
/** A token file is one line; anything larger is not one. */
const MAX_TOKEN_FILE_BYTES = 4096;
/** RFC 6750's b64token: what may follow `Bearer ` in an Authorization header. */
const B64TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/;

function unreadable(file: string, why: string, remedy: string): NovaletError {
  return new NovaletError('API_AUTH_TOKEN_UNREADABLE', `The HTTP API token file ${quoteForMessage(file)} ([api] auth_token_file) ${why}.`, remedy);
}

const MAKE_ONE = (file: string): string =>
  `Remove it and novalet makes one at the next start, or write a token of your own in it (openssl rand -hex 32 > ${quoteForMessage(file)}; chmod 600 ${quoteForMessage(file)}).`;

/** The token of the file's text: one line of RFC 6750 characters, at least TOKEN_MIN_LENGTH long. Never quotes the text. */
function tokenOf(file: string, text: string): string {
  const token = text.trim();
  if (token === '') throw unreadable(file, 'is empty', MAKE_ONE(file));
  if (!B64TOKEN.test(token)) {
    throw unreadable(file, 'does not hold a token: a token is one line of letters, digits and - . _ ~ + / (with = at its end only)', MAKE_ONE(file));
  }
  if (token.length < TOKEN_MIN_LENGTH) {
    throw unreadable(file, `holds a token of ${token.length} characters; novalet takes at least ${TOKEN_MIN_LENGTH}, so that it cannot be guessed`, MAKE_ONE(file));
  }
  return token;
}

/** The file's token, or null when there is no file. */
async function readTokenFile(file: string): Promise<string | null> {
  let handle;
  try {
    // O_NONBLOCK: a FIFO put in its place is refused below instead of blocking the start.
    handle = await open(file, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return null;
    if (code === 'EACCES') {
      const uid = process.geteuid?.() ?? '?';
      throw unreadable(file, `cannot be read by the service's user (uid ${uid})`, `Give it to that user, mode 0600: chown ${uid} ${quoteForMessage(file)}; chmod 600 ${quoteForMessage(file)}.`);
    }
    throw unreadable(file, `cannot be opened (${code ?? (error as Error).message})`, 'Set [api] auth_token_file to a file the service can read, in a folder of its own.');
  }
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) throw unreadable(file, 'is not a regular file', 'Set [api] auth_token_file to a regular file (novalet makes it at the first start when missing).');
    if ((stat.mode & 0o077) !== 0) {
      const mode = (stat.mode & 0o777).toString(8).padStart(4, '0');
      throw unreadable(file, `can be used by users other than its owner (mode ${mode}): any of them could read the token, or write one of their own`, `Make it private: chmod 600 ${quoteForMessage(file)}.`);
    }
    const uid = process.geteuid?.();
    if (uid !== undefined && stat.uid !== uid) {
      throw unreadable(file, `belongs to uid ${stat.uid}, not to the service's user (uid ${uid}): that user could change the token`, `Make it the service user's: chown ${uid} ${quoteForMessage(file)}.`);
    }
    if (stat.size > MAX_TOKEN_FILE_BYTES) throw unreadable(file, `is ${stat.size} bytes long, more than a token file holds (${MAX_TOKEN_FILE_BYTES})`, MAKE_ONE(file));
    return tokenOf(file, (await handle.readFile()).toString('utf8'));
  } finally {
    await handle.close();
  }
}

/**
 * Makes the file with a new token, atomically: written and synced under a
 * temporary name, then linked to its name, so that a crash leaves either no
 * file or a whole one, and a second process starting at the same moment
 * uses the first one's token (link fails with EEXIST). Null when another
 * made it first.
 */
async function makeTokenFile(file: string): Promise<string | null> {
  const token = randomBytes(32).toString('base64url');
  const dir = path.dirname(file);
  const temporary = path.join(dir, `.${path.basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const handle = await open(temporary, 'wx', 0o600);
    try {
      // The mode given to open() is narrowed by the umask; this makes it exactly 0600.
      await handle.chmod(0o600);
      await handle.writeFile(`${token}\n`);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await link(temporary, file);
    return token;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return null;
    throw unreadable(file, `is missing and cannot be made (${code ?? (error as Error).message})`, `Make its folder writable by the service's user, or set [api] auth_token_file to a file in a folder the service can write (its state_path).`);
  } finally {
    await unlink(temporary).catch(() => undefined);
  }
}

/**
 * The API's authentication as configured: the token read from (or, at the
 * first start, made in) `[api] auth_token_file`, or none with a WARN.
 * Throws NovaletError API_AUTH_TOKEN_UNREADABLE naming the file and the
 * remedy when the file cannot be used.
 */
export async function loadApiToken(api: ApiSection, log: Logger): Promise<ApiAuth> {
  if (api.auth === 'none') {
    log.warn(
      { component: 'api', auth: 'none' },
      `[api] auth = none: the HTTP API on ${api.listen}:${api.port} answers every caller without a token, so anyone who reaches that port reads every guest's serial console and this host's probe. Set [api] auth = token (the default) unless something else guards the port.`,
    );
    return { mode: 'none', token: null };
  }
  const file = api.auth_token_file;
  if (typeof file !== 'string' || file.trim() === '') {
    throw new NovaletError('API_AUTH_TOKEN_UNREADABLE', 'The HTTP API wants a token ([api] auth = token) but [api] auth_token_file is empty.', 'Set [api] auth_token_file to a file (the default is $state_path/api-token).');
  }
  const existing = await readTokenFile(file);
  if (existing !== null) {
    log.info({ component: 'api', auth: 'token', file }, 'HTTP API: callers need the bearer token of [api] auth_token_file');
    return { mode: 'token', token: existing };
  }
  const made = await makeTokenFile(file);
  if (made !== null) {
    log.info({ component: 'api', auth: 'token', file }, 'HTTP API: made a new bearer token in [api] auth_token_file (mode 0600); callers send Authorization: Bearer <its content>');
    return { mode: 'token', token: made };
  }
  // Another process made it between our read and our link: use its token.
  const theirs = await readTokenFile(file);
  if (theirs === null) throw unreadable(file, 'is missing and cannot be made: a name that leads nowhere (a dangling symbolic link?) holds its place', MAKE_ONE(file));
  return { mode: 'token', token: theirs };
}

/**
 * A check of `Authorization` headers against `token`: `Bearer <token>`
 * (the scheme in any case, as RFC 7235 has it). Both sides are hashed and
 * the digests compared with timingSafeEqual, so the time taken tells
 * nothing of the token, not even its length.
 */
export function bearerMatcher(token: string): (authorization: string | undefined) => boolean {
  const expected = createHash('sha256').update(token, 'utf8').digest();
  return (authorization) => {
    const match = authorization === undefined ? null : /^Bearer +(\S+) *$/i.exec(authorization);
    const given = createHash('sha256').update(match?.[1] ?? '', 'utf8').digest();
    return timingSafeEqual(given, expected) && match !== null;
  };
}
