import { open } from 'node:fs/promises';

/**
 * The last `count` lines of a serial console log, reading only the end of
 * the file (logs of long-running guests grow without bound).
 */
export async function lastLines(file: string, count: number): Promise<string[]> {
  if (count <= 0) return [];
  let handle;
  try {
    handle = await open(file, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  try {
    const { size } = await handle.stat();
    let chunk = 64 * 1024;
    for (;;) {
      const start = Math.max(0, size - chunk);
      const buffer = Buffer.alloc(size - start);
      await handle.read(buffer, 0, buffer.length, start);
      const lines = buffer.toString('utf8').replace(/\r/g, '').split('\n');
      if (lines.at(-1) === '') lines.pop();
      // The first line may be cut unless the whole file was read.
      if (lines.length > count || start === 0) return lines.slice(-count);
      chunk *= 4;
    }
  } finally {
    await handle.close();
  }
}
