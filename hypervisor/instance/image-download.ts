import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, rm, stat, type FileHandle } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import type { LookupFunction } from 'node:net';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { DefaultSection } from '../../config/novalet-config.js';
import { maskUrlCredentials } from '../../config/mask-credentials.js';
import { watchRate } from './download-rate.js';
import { ImageError } from './image-error.js';
import { checkImageUrl, DEFAULT_IMAGE_URL_RULES, namedPortOf, pinnedLookup, type AddressEnvironment, type ImageUrlRules } from './image-url-rules.js';
import { isImageUrl } from './spec.js';

/**
 * The one way bytes come into the image cache (image-cache.ts): an http(s)
 * download or a local file copy, written to a file the caller names, hashed
 * on the way, and bounded on every side — the caller's abort signal, an
 * idle timeout (no byte for N s), a minimum rate over a window, an overall
 * deadline, Content-Length exactly, and a size limit
 * (image_download_max_size_mb, and never more than the free space the
 * caller found). Every URL, the one given and each redirect, passes the
 * image URL rules (image-url-rules.ts) before anything connects to it, and
 * is connected to only at the addresses checked. On any failure the file is
 * gone.
 *
 * node:http(s) rather than fetch: fetch decodes Content-Encoding (so the
 * bytes hashed are not the bytes served, and a small gzip body can expand
 * without bound), has timeouts of its own (300 s for headers and between
 * body chunks) that would cut in before, or instead of, the configured
 * ones, and takes no lookup of ours. Redirects are followed here, by hand,
 * so that every hop is checked.
 */

export { ImageError };

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
  /** Bytes per second the body must average over minRateWindowMs; 0: not checked. */
  minRate: number;
  minRateWindowMs: number;
}

type LimitOptions = 'image_download_idle_timeout' | 'image_download_timeout' | 'image_download_max_size_mb' | 'image_download_min_rate' | 'image_download_min_rate_window';

export function downloadLimitsFrom(options: Pick<DefaultSection, LimitOptions>): DownloadLimits {
  return {
    idleTimeoutMs: options.image_download_idle_timeout * 1000,
    timeoutMs: options.image_download_timeout * 1000,
    maxBytes: options.image_download_max_size_mb * 1024 * 1024,
    minRate: options.image_download_min_rate,
    minRateWindowMs: options.image_download_min_rate_window * 1000,
  };
}

/** The defaults of the options above, for a cache made without a configuration. */
export const DEFAULT_DOWNLOAD_LIMITS: DownloadLimits = downloadLimitsFrom({
  image_download_idle_timeout: 60,
  image_download_timeout: 3600,
  image_download_max_size_mb: 1048576,
  image_download_min_rate: 1024,
  image_download_min_rate_window: 60,
});

/** The room left on the file system the file goes to, after reserved_host_disk_mb. */
export interface SpaceBudget {
  bytes: number;
  /** The folder whose file system was measured, for messages. */
  dir: string;
  reservedMb: number;
}

/** Where details that faults leave out go (a pino logger fits). */
export interface DebugLog {
  debug(fields: object, message: string): void;
}

export interface TransferOptions {
  limits: DownloadLimits;
  space: SpaceBudget;
  /** Mode of the file written. */
  fileMode: number;
  signal?: AbortSignal | undefined;
  /** glance's [import_filtering_opts]; glance's defaults unless given. */
  urlRules?: ImageUrlRules | undefined;
  /** DNS and this host's addresses; the system's unless given (tests inject their own). */
  addresses?: AddressEnvironment | undefined;
  log?: DebugLog | undefined;
}

export interface Transferred {
  sha256: string;
  bytes: number;
}

const seconds = (ms: number): string => `${Math.round(ms / 100) / 10} s`;

/** A write that found the file system full: DISK_FULL naming the folder and the remedy; null for other errors. */
export function diskFullError(err: unknown, dir: string, what: string): ImageError | null {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code !== 'ENOSPC' && code !== 'EDQUOT') return null;
  const full = code === 'EDQUOT' ? 'the disk quota there is used up (EDQUOT)' : 'its file system is full (ENOSPC)';
  return new ImageError(
    'DISK_FULL',
    `${what} could not be written to ${dir}: ${full}.`,
    `Free space in the file system holding ${dir}, or move [DEFAULT] instances_path to a larger one; nothing of the image was kept.`,
  );
}

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

/** A network error's words, once the body flows: Node gives the code on the error, wrappers on its cause. */
function describeNetworkError(err: unknown, url: URL): string {
  let e = err as (NodeJS.ErrnoException & { cause?: unknown }) | undefined;
  for (let depth = 0; e && !e.code && e.cause && depth < 3; depth++) e = e.cause as typeof e;
  const code = e?.code;
  if (code === 'ECONNRESET') return `${url.hostname} closed the connection (ECONNRESET)`;
  return code ? `${e?.message ?? String(err)} (${code})` : (e?.message ?? String(err));
}

/**
 * The hop under way: whether its connection is still being made, and what
 * to call it. A connection that fails, or is still not made when a timer
 * ends the transfer, reads the same whatever the cause — refused, filtered
 * or unreachable — so that image URLs cannot map which ports are open.
 */
interface Hop {
  connecting: boolean;
  shown: string;
  host: string;
  port: number;
}

function connectionFailed(hop: Hop): ImageError {
  return new ImageError('IMAGE_DOWNLOAD_FAILED', `The image ${hop.shown} could not be downloaded: no connection to ${hop.host} port ${hop.port} could be made.`, 'Check the URL and that the server is reachable from this host.');
}

/** One GET to the checked addresses, settled when the answer's headers arrive; aborting the signal destroys the request. */
async function get(url: URL, signal: AbortSignal, lookup: LookupFunction, hop: Hop): Promise<IncomingMessage> {
  // Loaded here, not at the top: TLS is some 20 ms of every command's start, and only downloads need it.
  const client = url.protocol === 'https:' ? await import('node:https') : await import('node:http');
  return new Promise((resolve, reject) => {
    // identity: the bytes stored, hashed and counted against Content-Length are the bytes served.
    // agent false: one connection per download, closed at its end, so that no pooled socket outlives it.
    const request = client.get(url, { signal, agent: false, lookup, headers: { 'accept-encoding': 'identity', 'user-agent': 'novalet' } }, resolve);
    request.on('socket', (socket) => {
      if (!socket.connecting) hop.connecting = false;
      else socket.once('connect', () => (hop.connecting = false));
    });
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

interface FollowContext {
  signal: AbortSignal;
  rules: ImageUrlRules;
  addresses: AddressEnvironment | undefined;
  hop: Hop;
  log: DebugLog | undefined;
}

/** The answer to the last hop of redirects, status 200, its body not yet read. */
async function follow(source: string, context: FollowContext): Promise<{ response: IncomingMessage; url: URL }> {
  const { signal, hop } = context;
  let url = new URL(source);
  let namedPort = namedPortOf(source, url);
  let via: string | null = null;
  checkScheme(url, maskUrlCredentials(source), null);
  for (let hops = 0; ; hops++) {
    const shown = maskUrlCredentials(url.href);
    // From here until the socket connects (DNS included), a failure or a timer's end reads as connectionFailed.
    Object.assign(hop, { connecting: true, shown, host: url.hostname, port: url.port === '' ? (url.protocol === 'https:' ? 443 : 80) : Number(url.port) });
    const target = await checkImageUrl(url, context.rules, { namedPort, via, env: context.addresses, signal });
    let response: IncomingMessage;
    try {
      response = await get(url, signal, pinnedLookup(url.hostname.replace(/^\[|\]$/g, ''), target.addresses), hop);
    } catch (err) {
      if (signal.aborted) throw signal.reason;
      context.log?.debug({ url: shown, code: (err as NodeJS.ErrnoException).code, error: (err as Error).message }, 'image download: no answer from the server');
      if (hop.connecting) throw connectionFailed(hop);
      throw new ImageError('IMAGE_DOWNLOAD_FAILED', `The image ${shown} could not be downloaded: ${describeNetworkError(err, url)} before answering.`, 'Check the URL and the server.');
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
      const location = response.headers.location;
      let next: URL;
      try {
        next = new URL(location, url);
      } catch {
        throw new ImageError('IMAGE_REDIRECT_REFUSED', `The image download was refused: ${shown} redirects to '${maskUrlCredentials(location)}', which is not a URL.`, 'Give the URL of the image itself.');
      }
      checkScheme(next, maskUrlCredentials(next.href), shown);
      namedPort = namedPortOf(location, next, next.host === url.host ? namedPort : null);
      via = shown;
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
  // While a connection is being made, a timer's end reads as the connection's failure (connectionFailed).
  const hop: Hop = { connecting: false, shown, host: '', port: 0 };
  const stop = (reason: ImageError): void => {
    if (!stopper.signal.aborted) stopper.abort(hop.connecting ? connectionFailed(hop) : reason);
  };
  const callerAborted = (): ImageError =>
    new ImageError('IMAGE_DOWNLOAD_ABORTED', `The ${verb} of the image ${shown} was cancelled.`, 'Nothing of it was kept; start again when wanted.');
  const onCallerAbort = (): void => {
    if (!stopper.signal.aborted) stopper.abort(callerAborted());
  };
  if (options.signal?.aborted) throw callerAborted();
  options.signal?.addEventListener('abort', onCallerAbort, { once: true });
  const deadline = setTimeout(
    () => stop(new ImageError('IMAGE_DOWNLOAD_TIMEOUT', `The ${verb} of the image ${shown} did not finish within image_download_timeout = ${seconds(limits.timeoutMs)}.`, 'Raise [DEFAULT] image_download_timeout for large images on slow links, or use a closer server; nothing of it was kept.')),
    limits.timeoutMs,
  );
  let idle: NodeJS.Timeout | undefined;
  let rate: { stop(): void } | undefined;
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
  const tooSlow = (delivered: number, span: number): void =>
    stop(
      new ImageError(
        'IMAGE_DOWNLOAD_TOO_SLOW',
        `The ${verb} of the image ${shown} was given up: ${delivered} bytes in the last ${Math.round(span * 10) / 10} s, less than image_download_min_rate = ${limits.minRate} bytes/s averaged over image_download_min_rate_window = ${seconds(limits.minRateWindowMs)}.`,
        'Use a faster or closer server, or lower [DEFAULT] image_download_min_rate (0 turns the check off) or raise image_download_min_rate_window; nothing of it was kept.',
      ),
    );
  const limit = sizeLimit(limits, space);
  let handle: FileHandle;
  try {
    handle = await open(file, 'wx', options.fileMode);
  } catch (err) {
    clearTimeout(deadline);
    options.signal?.removeEventListener('abort', onCallerAbort);
    throw diskFullError(err, space.dir, `The image ${shown}`) ?? err;
  }
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
      const context = { signal: stopper.signal, rules: options.urlRules ?? DEFAULT_IMAGE_URL_RULES, addresses: options.addresses, hop, log: options.log };
      // A timer that ends the transfer during the checks or the connection aborts it with its own reason.
      const { response, url } = await follow(source, context).catch((err: unknown) => {
        throw stopper.signal.aborted ? stopper.signal.reason : err;
      });
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
    rate = watchRate(limits.minRate, limits.minRateWindowMs, () => bytes, tooSlow);
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
      const full = diskFullError(err, space.dir, `The image ${shown}`);
      if (full) throw full;
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
    rate?.stop();
    options.signal?.removeEventListener('abort', onCallerAbort);
    await handle.close().catch(() => undefined);
  }
}
