import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, rm, stat } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { DefaultSection } from '../../config/novalet-config.js';
import { maskUrlCredentials } from '../../config/mask-credentials.js';
import { NovaletError } from '../../config/novalet-error.js';
import { isImageUrl } from './spec.js';

/**
 * The one way bytes come into the image cache (image-cache.ts): an http(s)
 * download or a local file copy, written to a file the caller names, hashed
 * on the way, and bounded on every side — the caller's abort signal, an
 * idle timeout (no byte for N s), an overall deadline, Content-Length
 * exactly, and a size limit (image_download_max_size_mb, and never more than
 * the free space the caller found). On any failure the file is gone.
 *
 * node:http(s) rather than fetch: fetch decodes Content-Encoding (so the
 * bytes hashed are not the bytes served, and a small gzip body can expand
 * without bound) and has timeouts of its own (300 s for headers and between
 * body chunks) that would cut in before, or instead of, the configured
 * ones. Redirects are followed here, by hand, so that every hop is checked.
 */

/** Every refusal of an image, by the download or by the cache (image-cache.ts). */
export class ImageError extends NovaletError {}

/** Redirects followed at most, as curl's and requests' limits are far more than an image server needs. */
export const MAX_REDIRECTS = 5;

const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);

export interface DownloadLimits {
  /** Milliseconds without a byte before the transfer is given up. */
  idleTimeoutMs: number;
  /** Milliseconds for the whole transfer, redirects included. */
  timeoutMs: number;
  /** The configured largest image, in bytes. */
  maxBytes: number;
}

export function downloadLimitsFrom(options: Pick<DefaultSection, 'image_download_idle_timeout' | 'image_download_timeout' | 'image_download_max_size_mb'>): DownloadLimits {
  return {
    idleTimeoutMs: options.image_download_idle_timeout * 1000,
    timeoutMs: options.image_download_timeout * 1000,
    maxBytes: options.image_download_max_size_mb * 1024 * 1024,
  };
}

/** The defaults of the options above, for a cache made without a configuration. */
export const DEFAULT_DOWNLOAD_LIMITS: DownloadLimits = downloadLimitsFrom({
  image_download_idle_timeout: 60,
  image_download_timeout: 3600,
  image_download_max_size_mb: 1048576,
});

/** The room left on the file system the file goes to, after reserved_host_disk_mb. */
export interface SpaceBudget {
  bytes: number;
  /** The folder whose file system was measured, for messages. */
  dir: string;
  reservedMb: number;
}

export interface TransferOptions {
  limits: DownloadLimits;
  space: SpaceBudget;
  /** Mode of the file written. */
  fileMode: number;
  signal?: AbortSignal | undefined;
}

export interface Transferred {
  sha256: string;
  bytes: number;
}

const seconds = (ms: number): string => `${Math.round(ms / 100) / 10} s`;

/** The size limit and what to say when it is passed. */
function sizeLimit(limits: DownloadLimits, space: SpaceBudget): { bytes: number; refuse: (shown: string, what: string) => ImageError } {
  if (space.bytes < limits.maxBytes) {
    return {
      bytes: space.bytes,
      refuse: (shown, what) =>
        new ImageError(
          'IMAGE_NO_SPACE',
          `The image ${shown} ${what} the ${space.bytes} bytes free in ${space.dir} beyond reserved_host_disk_mb = ${space.reservedMb}.`,
          'Free disk space there (or lower reserved_host_disk_mb); nothing of the image was kept.',
        ),
    };
  }
  return {
    bytes: limits.maxBytes,
    refuse: (shown, what) =>
      new ImageError(
        'IMAGE_TOO_LARGE',
        `The image ${shown} ${what} image_download_max_size_mb = ${limits.maxBytes / (1024 * 1024)} (${limits.maxBytes} bytes).`,
        'Use a smaller image, or raise [DEFAULT] image_download_max_size_mb; nothing of the image was kept.',
      ),
  };
}

/** A network error's words: Node gives the code on the error, fetch-style wrappers on its cause. */
function describeNetworkError(err: unknown, url: URL): string {
  let e = err as (NodeJS.ErrnoException & { cause?: unknown }) | undefined;
  for (let depth = 0; e && !e.code && e.cause && depth < 3; depth++) e = e.cause as typeof e;
  const code = e?.code;
  const host = url.hostname;
  const port = url.port || (url.protocol === 'https:' ? '443' : '80');
  switch (code) {
    case 'ENOTFOUND':
      return `the host name ${host} does not resolve (ENOTFOUND)`;
    case 'EAI_AGAIN':
      return `the host name ${host} could not be resolved now (EAI_AGAIN: DNS did not answer)`;
    case 'ECONNREFUSED':
      return `the connection to ${host} port ${port} was refused (ECONNREFUSED)`;
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return `${host} cannot be reached from this host (${code})`;
    case 'ETIMEDOUT':
      return `the connection to ${host} port ${port} timed out (ETIMEDOUT)`;
    case 'ECONNRESET':
      return `${host} closed the connection (ECONNRESET)`;
    default:
      return code ? `${e?.message ?? String(err)} (${code})` : (e?.message ?? String(err));
  }
}

/** One GET, settled when the answer's headers arrive; aborting the signal destroys the request. */
async function get(url: URL, signal: AbortSignal): Promise<IncomingMessage> {
  // Loaded here, not at the top: TLS is some 20 ms of every command's start, and only downloads need it.
  const client = url.protocol === 'https:' ? await import('node:https') : await import('node:http');
  return new Promise((resolve, reject) => {
    // identity: the bytes stored, hashed and counted against Content-Length are the bytes served.
    // agent false: one connection per download, closed at its end, so that no pooled socket outlives it.
    const request = client.get(url, { signal, agent: false, headers: { 'accept-encoding': 'identity', 'user-agent': 'novalet' } }, resolve);
    // Kept for the request's whole life: a later error (the body's) reaches the response stream too, and
    // an 'error' without a listener would end the process.
    request.on('error', reject);
  });
}

function checkScheme(url: URL, shown: string, via: string | null): void {
  if (url.protocol === 'http:' || url.protocol === 'https:') return;
  const detail = via === null ? `${shown} is not an http or https URL` : `${via} redirects to ${shown}, which is not an http or https URL`;
  throw new ImageError('IMAGE_REDIRECT_REFUSED', `The image download was refused: ${detail}.`, 'Give an http(s) URL that leads to the image by http(s) alone.');
}

/** The answer to the last hop of redirects, status 200, its body not yet read. */
async function follow(source: string, signal: AbortSignal): Promise<{ response: IncomingMessage; url: URL }> {
  let url = new URL(source);
  checkScheme(url, maskUrlCredentials(source), null);
  for (let hops = 0; ; hops++) {
    const shown = maskUrlCredentials(url.href);
    let response: IncomingMessage;
    try {
      response = await get(url, signal);
    } catch (err) {
      if (signal.aborted) throw signal.reason;
      throw new ImageError('IMAGE_DOWNLOAD_FAILED', `The image ${shown} could not be downloaded: ${describeNetworkError(err, url)}.`, 'Check the URL and that the server is reachable from this host.');
    }
    const status = response.statusCode ?? 0;
    if (REDIRECT_STATUSES.has(status) && response.headers.location !== undefined) {
      response.destroy();
      if (hops === MAX_REDIRECTS) {
        throw new ImageError(
          'IMAGE_REDIRECT_REFUSED',
          `The image download was refused: ${maskUrlCredentials(source)} redirects more than ${MAX_REDIRECTS} times (the last hop was ${shown}).`,
          'Give the URL the redirects end at, or fix the loop on the server.',
        );
      }
      let next: URL;
      try {
        next = new URL(response.headers.location, url);
      } catch {
        throw new ImageError('IMAGE_REDIRECT_REFUSED', `The image download was refused: ${shown} redirects to '${maskUrlCredentials(response.headers.location)}', which is not a URL.`, 'Give the URL of the image itself.');
      }
      checkScheme(next, maskUrlCredentials(next.href), shown);
      url = next;
      continue;
    }
    if (status !== 200) {
      response.destroy();
      throw new ImageError('IMAGE_DOWNLOAD_FAILED', `The image ${shown} could not be downloaded: the server answered ${status} ${response.statusMessage ?? ''}`.trimEnd() + '.', 'Check the URL.');
    }
    return { response, url };
  }
}

/**
 * Writes `source` (an http(s) URL or a local file) to `file`, which must not
 * exist, and returns its SHA-256. On failure `file` is removed; the error is
 * an ImageError naming the source (its password masked) and what
 * happened, or the local file's IMAGE_NOT_FOUND.
 */
export async function transferInto(source: string, file: string, options: TransferOptions): Promise<Transferred> {
  const { limits, space } = options;
  const isUrl = isImageUrl(source);
  const shown = isUrl ? maskUrlCredentials(source) : source;
  const verb = isUrl ? 'download' : 'copy';
  const stopper = new AbortController();
  const stop = (reason: ImageError): void => {
    if (!stopper.signal.aborted) stopper.abort(reason);
  };
  const callerAborted = (): ImageError =>
    new ImageError('IMAGE_DOWNLOAD_ABORTED', `The ${verb} of the image ${shown} was cancelled.`, 'Nothing of it was kept; start again when wanted.');
  const onCallerAbort = (): void => stop(callerAborted());
  if (options.signal?.aborted) throw callerAborted();
  options.signal?.addEventListener('abort', onCallerAbort, { once: true });
  const deadline = setTimeout(
    () => stop(new ImageError('IMAGE_DOWNLOAD_TIMEOUT', `The ${verb} of the image ${shown} did not finish within image_download_timeout = ${seconds(limits.timeoutMs)}.`, 'Raise [DEFAULT] image_download_timeout for large images on slow links, or use a closer server; nothing of it was kept.')),
    limits.timeoutMs,
  );
  let idle: NodeJS.Timeout | undefined;
  let bytes = 0;
  const stalled = (): void =>
    stop(
      new ImageError(
        'IMAGE_DOWNLOAD_STALLED',
        `The ${verb} of the image ${shown} stalled: no byte for ${seconds(limits.idleTimeoutMs)} (image_download_idle_timeout), after ${bytes} bytes.`,
        'Check the server and the network, or raise [DEFAULT] image_download_idle_timeout; nothing of it was kept.',
      ),
    );
  const touch = (): void => {
    clearTimeout(idle);
    idle = setTimeout(stalled, limits.idleTimeoutMs);
  };
  const limit = sizeLimit(limits, space);
  const handle = await open(file, 'wx', options.fileMode);
  try {
    if (space.bytes <= 0) {
      throw new ImageError(
        'IMAGE_NO_SPACE',
        `The image ${shown} cannot be taken in: there is no room in ${space.dir}, whose free space is not more than reserved_host_disk_mb = ${space.reservedMb}.`,
        'Free disk space there (or lower reserved_host_disk_mb).',
      );
    }
    touch();
    let body: Readable;
    let declared: number | null = null;
    let at: URL | null = null;
    if (isUrl) {
      const { response, url } = await follow(source, stopper.signal);
      at = url;
      const length = response.headers['content-length'];
      declared = length !== undefined && /^\d+$/.test(length) ? Number(length) : null;
      if (declared !== null && declared > limit.bytes) {
        response.destroy();
        throw limit.refuse(shown, `declares ${declared} bytes (Content-Length), more than`);
      }
      body = response;
    } else {
      const info = await stat(source).catch(() => null);
      if (info?.isFile() && info.size > limit.bytes) throw limit.refuse(shown, `is ${info.size} bytes, more than`);
      body = createReadStream(source);
    }
    const hash = createHash('sha256');
    // More than Content-Length never arrives: Node's HTTP parser ends the body there and drops the rest.
    const meter = new Transform({
      transform(chunk: Buffer, _enc, done) {
        bytes += chunk.length;
        if (bytes > limit.bytes) return done(limit.refuse(shown, `is more than`));
        touch();
        hash.update(chunk);
        done(null, chunk);
      },
    });
    try {
      await pipeline(body, meter, handle.createWriteStream(), { signal: stopper.signal });
    } catch (err) {
      if (stopper.signal.aborted) throw stopper.signal.reason;
      if (err instanceof ImageError) throw err;
      const e = err as NodeJS.ErrnoException;
      if (!isUrl && (e.syscall === 'open' || e.syscall === 'read')) {
        throw new ImageError('IMAGE_NOT_FOUND', `The image file ${source} cannot be read: ${e.code ?? e.message}.`, 'Give the path of an existing, readable image file.');
      }
      if (e.code === 'ENOSPC' || e.code === 'EDQUOT') {
        throw new ImageError('IMAGE_NO_SPACE', `The image ${shown} could not be written to ${space.dir}: ${e.code}.`, 'Free disk space there; nothing of the image was kept.');
      }
      const got = declared === null ? `after ${bytes} bytes` : `after ${bytes} of ${declared} bytes`;
      throw new ImageError('IMAGE_DOWNLOAD_FAILED', `The ${verb} of ${shown} was cut off ${got}: ${at ? describeNetworkError(err, at) : e.message}.`, 'Try again; nothing partial was kept.');
    }
    if (declared !== null && bytes !== declared) {
      throw new ImageError('IMAGE_DOWNLOAD_FAILED', `The download of ${shown} was cut off: got ${bytes} of ${declared} bytes.`, 'Try again; nothing partial was kept.');
    }
    return { sha256: hash.digest('hex'), bytes };
  } catch (err) {
    await handle.close().catch(() => undefined);
    await rm(file, { force: true });
    throw err;
  } finally {
    clearTimeout(deadline);
    clearTimeout(idle);
    options.signal?.removeEventListener('abort', onCallerAbort);
    await handle.close().catch(() => undefined);
  }
}
