/**
 * The folders novalet writes in, checked once before any command uses them
 * (cli/load-cli-config.ts): a regular file where a folder should be, a path
 * under /proc or /sys, or a folder that cannot be created or written is one
 * line naming the option and the path. Unchecked, `state_path = /proc/nope`
 * spun at 100% CPU in mkdir (Node's recursive mkdir loops on /proc's ENOENT)
 * and a regular file there was a stack trace from the embedded libvirt root.
 * A few stat and access calls: `validate` has a 0.5 s budget.
 */

import { accessSync, constants, realpathSync, statSync, type Stats } from 'node:fs';
import path from 'node:path';
import { ConfigError } from './config-error.js';
import type { DefaultSection, LoadedConfig } from './novalet-config.js';
import { quoteForMessage } from './quote-for-message.js';

/** The options that name folders novalet writes in, in the order they are checked. */
export const STATE_FOLDER_OPTIONS = ['state_path', 'instances_path'] as const satisfies readonly (keyof DefaultSection)[];

/** Kernel file systems: nothing can be created in them, and mkdir -p spins there. */
const KERNEL_FILE_SYSTEMS = ['/proc', '/sys'];

/** Throws ConfigError (CONFIG_STATE_PATH) for the first option whose folder novalet cannot use. */
export function checkStateFolders(loaded: LoadedConfig): void {
  for (const name of STATE_FOLDER_OPTIONS) {
    const folder = loaded.values.DEFAULT[name];
    const secret = loaded.secret.DEFAULT[name] ?? false;
    const problem = folderProblem(folder, secret);
    if (problem === null) continue;
    const setting = loaded.settings.DEFAULT[name];
    // The path is shown as written and, when substitution changed it, as it expanded (unless secret).
    const expanded = setting && setting.text !== setting.raw && !secret ? `(${quoteForMessage(folder)}) ` : '';
    throw new ConfigError({
      code: 'CONFIG_STATE_PATH',
      file: setting?.file,
      line: setting?.line,
      section: 'DEFAULT',
      option: setting?.option ?? name,
      value: setting?.raw ?? folder,
      secret,
      problem: `${expanded}${problem}`,
      predicate: true,
      remedy: `Set [DEFAULT] ${name} to a folder novalet can create and write in, such as ${name === 'state_path' ? '/var/lib/novalet' : '$state_path/instances'}.`,
    });
  }
}

/** Why novalet cannot keep state in `folder`, or null when it can (it exists, or can be created, and is writable). */
export function folderProblem(folder: string, secret = false): string | null {
  const shown = (p: string): string => (secret ? 'a folder on the way' : p);
  if (!path.isAbsolute(folder)) return 'is not an absolute path; novalet keeps its state in the same place whatever folder it is started from.';
  const resolved = path.resolve(folder);
  const kernel = kernelFileSystem(resolved);
  if (kernel !== null) return `is under ${kernel}, a kernel file system where novalet cannot keep state.`;
  // Up from the folder to the nearest part that exists: it must be a writable folder.
  let current = resolved;
  for (;;) {
    let stat: Stats;
    try {
      stat = statSync(current);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if ((code === 'ENOENT' || code === 'ENOTDIR') && current !== path.dirname(current)) {
        current = path.dirname(current);
        continue;
      }
      if (code === 'EACCES') return `cannot be reached: ${shown(current)} is not searchable for the user novalet runs as.`;
      return `cannot be checked (${code ?? (err as Error).message} on ${shown(current)}).`;
    }
    if (!stat.isDirectory()) {
      return current === resolved
        ? `is ${fileKind(stat)}, where a folder should be.`
        : `cannot be created: ${shown(current)} is ${fileKind(stat)}, not a folder.`;
    }
    const real = realpathSync(current);
    const realKernel = kernelFileSystem(real);
    if (realKernel !== null) return `is under ${realKernel} (through a link), a kernel file system where novalet cannot keep state.`;
    try {
      accessSync(current, constants.W_OK | constants.X_OK);
    } catch (err) {
      const why = (err as NodeJS.ErrnoException).code === 'EROFS' ? 'on a read-only file system' : 'not writable for the user novalet runs as';
      return current === resolved ? `is ${why}.` : `cannot be created: ${shown(current)} is ${why}.`;
    }
    return null;
  }
}

function kernelFileSystem(absolute: string): string | null {
  return KERNEL_FILE_SYSTEMS.find((root) => absolute === root || absolute.startsWith(`${root}/`)) ?? null;
}

/** What a path that is not a folder (or not a regular file) is, for messages. */
export function fileKind(stat: Stats): string {
  if (stat.isFile()) return 'a regular file';
  if (stat.isDirectory()) return 'a directory';
  if (stat.isFIFO()) return 'a FIFO';
  if (stat.isCharacterDevice()) return 'a character device';
  if (stat.isBlockDevice()) return 'a block device';
  if (stat.isSocket()) return 'a socket';
  return 'not a regular file';
}
