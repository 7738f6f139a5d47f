/** errno numbers as the names people search for (EACCES, ENOTTY, …). */
import os from 'node:os';

let names: Map<number, string> | null = null;

export function errnoName(errno: number): string {
  if (names === null) {
    names = new Map();
    for (const [name, value] of Object.entries(os.constants.errno)) {
      // Aliases (EWOULDBLOCK = EAGAIN, EDEADLOCK = EDEADLK): keep the first, canonical one.
      if (!names.has(value)) names.set(value, name);
    }
  }
  return names.get(errno) ?? `errno ${errno}`;
}
