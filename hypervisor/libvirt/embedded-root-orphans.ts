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

/** The files of `root`'s QEMU state folder (run/qemu: status XML and pid files), none when it is not there. */
export function qemuStateEntries(root: string): { dir: string; entries: string[] } {
  const dir = path.join(root, 'run/qemu');
  try {
    return { dir, entries: readdirSync(dir) };
  } catch {
    return { dir, entries: [] };
  }
}

/** Whether `pid` is a running QEMU of `root` (its command line names the root's own files). */
export function qemuOfRoot(pid: number, root: string): boolean {
  if (!Number.isInteger(pid) || pid <= 1) return false;
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return path.basename(cmdline.split('\0')[0] ?? '').startsWith('qemu-system-') && cmdline.includes(`${root}/`);
  } catch {
    // No such process any more.
    return false;
  }
}

/**
 * Stops (SIGKILL) the QEMU processes whose pid files are in `root`'s state,
 * and returns their pids. Call it only for a root nobody holds: a QEMU is
 * known as this root's by its command line, which names the root's own files.
 */
export function stopOrphanedQemus(root: string): number[] {
  const { dir, entries } = qemuStateEntries(root);
  const stopped: number[] = [];
  for (const entry of entries) {
    if (!entry.endsWith('.pid') || entry === 'driver.pid') continue;
    let pid: number;
    try {
      pid = Number(readFileSync(path.join(dir, entry), 'utf8').trim());
    } catch {
      // The file went: nothing to stop.
      continue;
    }
    if (!qemuOfRoot(pid, root)) continue;
    try {
      process.kill(pid, 'SIGKILL');
      stopped.push(pid);
    } catch {
      // Gone meanwhile.
    }
  }
  return stopped;
}
