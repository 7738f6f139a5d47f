/**
 * QEMU processes left running in an embedded root that no process holds.
 * A novalet command killed with SIGKILL cannot stop its guest; libvirt's
 * QEMU driver reconnects to that QEMU only when a process opens the same
 * root again, and until then it runs unowned (at full CPU under TCG). The
 * pool stops such QEMUs in the roots it passes over (embedded-root-pool.ts);
 * their domains' definitions and folders go with the start-up sweep of the
 * next process that opens the root (hypervisor/instance/leftovers.ts).
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

/**
 * Stops (SIGKILL) the QEMU processes whose pid files are in `root`'s state,
 * and returns their pids. Call it only for a root nobody holds: a QEMU is
 * known as this root's by its command line, which names the root's own files.
 */
export function stopOrphanedQemus(root: string): number[] {
  const dir = path.join(root, 'run/qemu');
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch {
    return [];
  }
  const stopped: number[] = [];
  for (const entry of entries) {
    if (!entry.endsWith('.pid') || entry === 'driver.pid') continue;
    let pid: number;
    let cmdline: string;
    try {
      pid = Number(readFileSync(path.join(dir, entry), 'utf8').trim());
      if (!Number.isInteger(pid) || pid <= 1) continue;
      cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    } catch {
      // No such process any more, or the file went: nothing to stop.
      continue;
    }
    const argv0 = path.basename(cmdline.split('\0')[0] ?? '');
    if (!argv0.startsWith('qemu-system-') || !cmdline.includes(`${root}/`)) continue;
    try {
      process.kill(pid, 'SIGKILL');
      stopped.push(pid);
    } catch {
      // Gone meanwhile.
    }
  }
  return stopped;
}
