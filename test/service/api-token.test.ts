/**
 * service/api-token.ts on real files in a folder of the test's own: the
 * token file made at the first start (mode 0600, whatever the umask, a new
 * random token) and reused after; the files refused with
 * API_AUTH_TOKEN_UNREADABLE naming the file and the remedy (others may
 * read or write it, another user owns it, empty, not a token, too short,
 * not a regular file); `auth = none` warns; the token is never logged nor
 * shown in an error; the constant-time check of Authorization headers.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { ApiSection } from '../../config/novalet-config.js';
import { NovaletError } from '../../config/novalet-error.js';
import { bearerMatcher, loadApiToken, TOKEN_MIN_LENGTH } from '../../service/api-token.js';
import { capturedLogger } from '../support/captured-logger.js';

const folders: string[] = [];
afterEach(() => {
  for (const folder of folders.splice(0)) rmSync(folder, { recursive: true, force: true });
});

function folder(): string {
  const made = mkdtempSync(path.join(tmpdir(), 'novalet-token-'));
  folders.push(made);
  return made;
}

const api = (file: string, auth: 'token' | 'none' = 'token'): ApiSection => ({ listen: '127.0.0.1', port: 8789, auth, auth_token_file: file });
const OWN_TOKEN = 'f'.repeat(20) + '0123456789abcdef0123456789abcdef';

async function refusal(file: string): Promise<NovaletError> {
  const logger = capturedLogger();
  const error = await loadApiToken(api(file), logger.log).then(
    () => null,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(NovaletError);
  const refused = error as NovaletError;
  expect(refused.code).toBe('API_AUTH_TOKEN_UNREADABLE');
  expect(refused.message).toContain(`'${file}' ([api] auth_token_file)`);
  expect(refused.remedy?.length).toBeGreaterThan(10);
  return refused;
}

describe('the API token file', () => {
  it('is made at the first start, mode 0600, with a new random token, and reused as it is after', async () => {
    const dir = folder();
    const file = path.join(dir, 'api-token');
    const logger = capturedLogger();
    const first = await loadApiToken(api(file), logger.log);
    expect(first.mode).toBe('token');
    expect(first.token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(readFileSync(file, 'utf8')).toBe(`${first.token}\n`);
    const made = statSync(file);
    expect(made.mode & 0o7777).toBe(0o600);
    expect(made.uid).toBe(process.geteuid!());
    // Nothing else was left in the folder (the temporary name is gone).
    expect(readdirSync(dir)).toEqual(['api-token']);
    const again = await loadApiToken(api(file), logger.log);
    expect(again).toEqual(first);
    expect(statSync(file).ino).toBe(made.ino);
    expect(statSync(file).mtimeMs).toBe(made.mtimeMs);
    // Another folder, another token.
    const other = await loadApiToken(api(path.join(folder(), 'api-token')), logger.log);
    expect(other.token).not.toBe(first.token);
    // The log says where the token is, never the token.
    expect(logger.lines.map((l) => l.msg)).toEqual([expect.stringContaining('made a new bearer token'), expect.stringContaining('callers need the bearer token'), expect.stringContaining('made a new bearer token')]);
    expect(logger.raw.join('\n')).not.toContain(first.token!);
  });

  it('is made 0600 whatever the umask, in a folder made 0700 when missing', async () => {
    const file = path.join(folder(), 'state', 'api-token');
    const previous = process.umask(0);
    try {
      await loadApiToken(api(file), capturedLogger().log);
    } finally {
      process.umask(previous);
    }
    expect(statSync(file).mode & 0o7777).toBe(0o600);
    expect(statSync(path.dirname(file)).mode & 0o7777).toBe(0o700);
  });

  it('two services starting at once on the same file share one token', async () => {
    const dir = folder();
    const file = path.join(dir, 'api-token');
    const [one, two] = await Promise.all([loadApiToken(api(file), capturedLogger().log), loadApiToken(api(file), capturedLogger().log)]);
    expect(one.token).toBe(two.token);
    expect(readFileSync(file, 'utf8')).toBe(`${one.token}\n`);
    expect(readdirSync(dir)).toEqual(['api-token']);
  });

  it("takes an operator's own token, one line with its line break, and through a symbolic link", async () => {
    const dir = folder();
    const file = path.join(dir, 'api-token');
    writeFileSync(file, `${OWN_TOKEN}\r\n`, { mode: 0o600 });
    expect(await loadApiToken(api(file), capturedLogger().log)).toEqual({ mode: 'token', token: OWN_TOKEN });
    const link = path.join(dir, 'linked-token');
    symlinkSync(file, link);
    expect((await loadApiToken(api(link), capturedLogger().log)).token).toBe(OWN_TOKEN);
  });

  it('is refused when others than its owner may read or write it, naming the mode and chmod 600', async () => {
    for (const mode of [0o644, 0o640, 0o604, 0o620, 0o602, 0o610]) {
      const file = path.join(folder(), 'api-token');
      writeFileSync(file, `${OWN_TOKEN}\n`);
      chmodSync(file, mode);
      const refused = await refusal(file);
      expect(refused.message, mode.toString(8)).toContain(`(mode 0${mode.toString(8)})`);
      expect(refused.remedy).toBe(`Make it private: chmod 600 '${file}'.`);
      expect(refused.message).not.toContain(OWN_TOKEN);
    }
  });

  it('is refused when it belongs to another user, who could change the token', async () => {
    const file = path.join(folder(), 'api-token');
    writeFileSync(file, `${OWN_TOKEN}\n`, { mode: 0o600 });
    // The tests run as root (they drive libvirt and QEMU): root may give the file away.
    expect(process.geteuid!()).toBe(0);
    chownSync(file, 65534, 65534);
    const refused = await refusal(file);
    expect(refused.message).toContain('belongs to uid 65534');
    expect(refused.remedy).toContain(`chown 0 '${file}'`);
  });

  it('is refused when it holds no token: empty, blank, too short, more than one word, not RFC 6750 characters, too large; never quoting it', async () => {
    const cases: [string, string][] = [
      ['', 'is empty'],
      [' \n\n', 'is empty'],
      ['short-token\n', `holds a token of 11 characters; novalet takes at least ${TOKEN_MIN_LENGTH}`],
      [`${OWN_TOKEN} ${OWN_TOKEN}\n`, 'does not hold a token'],
      [`${OWN_TOKEN}\n${OWN_TOKEN}\n`, 'does not hold a token'],
      [`${OWN_TOKEN.slice(0, 40)}é${OWN_TOKEN}\n`, 'does not hold a token'],
      [`${OWN_TOKEN}=x\n`, 'does not hold a token'],
      ['x'.repeat(5000), 'more than a token file holds'],
    ];
    for (const [content, why] of cases) {
      const file = path.join(folder(), 'api-token');
      writeFileSync(file, content, { mode: 0o600 });
      const refused = await refusal(file);
      expect(refused.message, JSON.stringify(content.slice(0, 30))).toContain(why);
      if (content.trim().length > 0) expect(refused.message).not.toContain(content.trim().slice(0, 8));
      expect(refused.remedy).toContain('openssl rand -hex 32');
    }
  });

  it('is refused when it is not a regular file (a folder, a FIFO), without blocking', async () => {
    const dir = folder();
    const asFolder = path.join(dir, 'a-folder');
    mkdirSync(asFolder, { mode: 0o700 });
    expect((await refusal(asFolder)).message).toContain('is not a regular file');
    const fifo = path.join(dir, 'a-fifo');
    execFileSync('mkfifo', ['-m', '600', fifo]);
    expect((await refusal(fifo)).message).toContain('is not a regular file');
  });

  it('is refused when it cannot be made: a name that leads nowhere, or a folder that is a file', async () => {
    const dir = folder();
    const dangling = path.join(dir, 'dangling');
    symlinkSync(path.join(dir, 'nowhere', 'token'), dangling);
    expect((await refusal(dangling)).message).toContain('cannot be made');
    const blocker = path.join(dir, 'blocker');
    writeFileSync(blocker, '');
    const under = path.join(blocker, 'api-token');
    const refused = await refusal(under);
    expect(refused.message).toMatch(/cannot be (made|opened) \(ENOTDIR\)|cannot be opened \(ENOTDIR\)/);
  });

  it('is refused when [api] auth_token_file is empty', async () => {
    const error = await loadApiToken(api(''), capturedLogger().log).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'API_AUTH_TOKEN_UNREADABLE' });
    expect((error as NovaletError).message).toContain('[api] auth_token_file is empty');
  });
});

describe('[api] auth = none', () => {
  it('turns the token off, says so loudly at WARN, and makes no file', async () => {
    const file = path.join(folder(), 'api-token');
    const logger = capturedLogger<{ level: number; msg: string }>();
    expect(await loadApiToken(api(file, 'none'), logger.log)).toEqual({ mode: 'none', token: null });
    const warnings = logger.lines.filter((line) => line.level === 40);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]!.msg).toContain('[api] auth = none');
    expect(warnings[0]!.msg).toContain('127.0.0.1:8789');
    expect(warnings[0]!.msg).toContain("every guest's serial console");
    expect(() => statSync(file)).toThrow(/ENOENT/);
  });
});

describe('the Authorization check', () => {
  it('takes Bearer <token> only, the scheme in any case', () => {
    const matches = bearerMatcher(OWN_TOKEN);
    expect(matches(`Bearer ${OWN_TOKEN}`)).toBe(true);
    expect(matches(`bearer ${OWN_TOKEN}`)).toBe(true);
    for (const header of [undefined, '', 'Bearer', OWN_TOKEN, `Bearer ${OWN_TOKEN.slice(1)}`, `Bearer ${OWN_TOKEN}0`, `Basic ${OWN_TOKEN}`, `Bearer ${OWN_TOKEN} x`]) {
      expect(matches(header), String(header)).toBe(false);
    }
  });
});
