import { open, type FileHandle } from 'node:fs/promises';
import { StringDecoder } from 'node:string_decoder';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Follows a serial console log as the guest writes it (like `tail -f`),
 * yielding whole lines without carriage returns. Polling: QEMU appends to a
 * plain file, and a short poll costs less than a watcher that must survive
 * the file being created late.
 */
export async function* followConsole(file: string, options: { signal?: AbortSignal; intervalMs?: number; fromStart?: boolean } = {}): AsyncGenerator<string> {
  const interval = options.intervalMs ?? 50;
  let handle: FileHandle | null = null;
  let offset = 0;
  let pending = '';
  const buffer = Buffer.alloc(64 * 1024);
  // A character split between two reads must not turn into two broken ones.
  const decoder = new StringDecoder('utf8');
  try {
    for (;;) {
      // Once stopped, one last read gives what the guest wrote just before.
      const stopping = options.signal?.aborted === true;
      if (handle === null) {
        try {
          handle = await open(file, 'r');
          if (options.fromStart === false) offset = (await handle.stat()).size;
        } catch {
          if (stopping) return;
          await sleep(interval);
          continue;
        }
      }
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, offset);
      if (bytesRead === 0) {
        if (stopping) {
          if (pending) yield pending.replace(/\r/g, '');
          return;
        }
        await sleep(interval);
        continue;
      }
      offset += bytesRead;
      pending += decoder.write(buffer.subarray(0, bytesRead));
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      for (const line of lines) yield line.replace(/\r/g, '');
    }
  } finally {
    await handle?.close();
  }
}

/** The first console line matching `pattern` within `timeoutMs` (or until `stop` aborts), or null. */
export async function waitForConsoleLine(file: string, pattern: RegExp, timeoutMs: number, stop?: AbortSignal): Promise<string | null> {
  // A timer and a listener of our own: Node 20 can collect an AbortSignal.timeout() joined by AbortSignal.any() before it fires.
  const ended = new AbortController();
  const end = () => ended.abort();
  const timer = setTimeout(end, timeoutMs);
  stop?.addEventListener('abort', end, { once: true });
  if (stop?.aborted) end();
  try {
    for await (const line of followConsole(file, { signal: ended.signal })) {
      if (pattern.test(line)) return line;
    }
    return null;
  } finally {
    clearTimeout(timer);
    stop?.removeEventListener('abort', end);
  }
}
