/**
 * An image server on 127.0.0.1 for tests of builds that download: it serves
 * files by name, and can hold them (the first 64 KiB sent, the rest once
 * released: downloads in flight at a moment the test chooses) or trickle
 * them (a few bytes now and then, for ever: a download that would never
 * end). It counts requests and notices when a client goes away before the
 * end (an aborted download).
 */
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ServedFile {
  content: Buffer;
  /** Send `bytes` every `everyMs` and never finish. */
  trickle?: { bytes: number; everyMs: number };
}

export interface ImageServer {
  port: number;
  url(name: string): string;
  /** Paths requested, in order. */
  readonly requests: string[];
  /** Responses under way now. */
  readonly inFlight: () => number;
  /** Paths whose client closed the connection before the whole file was sent. */
  readonly abandoned: string[];
  add(name: string, file: ServedFile): void;
  /** From now on, responses stop after 64 KiB until release(). */
  hold(): void;
  release(): void;
  close(): Promise<void>;
}

const HELD_PREFIX = 64 * 1024;

export async function startImageServer(): Promise<ImageServer> {
  const files = new Map<string, ServedFile>();
  const requests: string[] = [];
  const abandoned: string[] = [];
  const open = new Set<ServerResponse>();
  const timers = new Set<NodeJS.Timeout>();
  let gate: { promise: Promise<void>; release: () => void } | null = null;

  const server: Server = createServer((req, res) => {
    const name = (req.url ?? '/').slice(1);
    requests.push(req.url ?? '/');
    const file = files.get(name);
    if (!file) {
      res.writeHead(404).end();
      return;
    }
    open.add(res);
    let finished = false;
    res.on('finish', () => (finished = true));
    res.on('close', () => {
      open.delete(res);
      if (!finished) abandoned.push(req.url ?? '/');
    });
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(file.content.length) });
    if (file.trickle) {
      const { bytes, everyMs } = file.trickle;
      let sent = 0;
      const timer = setInterval(() => {
        if (res.destroyed) {
          clearInterval(timer);
          timers.delete(timer);
          return;
        }
        // Never the last byte: the download must not end by itself.
        const n = Math.min(bytes, file.content.length - 1 - sent);
        if (n > 0) res.write(file.content.subarray(sent, sent + n));
        sent += Math.max(n, 0);
      }, everyMs);
      timers.add(timer);
      return;
    }
    const held = gate;
    if (!held) {
      res.end(file.content);
      return;
    }
    res.write(file.content.subarray(0, HELD_PREFIX));
    void held.promise.then(() => {
      if (!res.destroyed) res.end(file.content.subarray(HELD_PREFIX));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    port,
    url: (name) => `http://127.0.0.1:${port}/${name}`,
    requests,
    inFlight: () => open.size,
    abandoned,
    add: (name, file) => void files.set(name, file),
    hold: () => {
      let release!: () => void;
      const promise = new Promise<void>((r) => (release = r));
      gate = { promise, release };
    },
    release: () => {
      gate?.release();
      gate = null;
    },
    close: async () => {
      gate?.release();
      for (const timer of timers) clearInterval(timer);
      for (const res of open) res.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
