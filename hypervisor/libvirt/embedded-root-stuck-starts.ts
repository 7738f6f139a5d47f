/**
 * Starts a SIGKILL left half-way in an embedded root. libvirt's embedded
 * QEMU driver records a start (the domain's status file, "paused, starting
 * up", with its start job) before it runs QEMU; a process killed in those
 * milliseconds leaves that status behind, and the next process to open the
 * root takes it as a start still under way: no QEMU, every destroy or
 * undefine waiting 30 s for a job nobody owns, for ever. Before a root
 * nobody holds is opened, such a status — paused while starting up, its
 * QEMU not running — is removed, so libvirt loads the domain's persistent
 * definition alone: shut off, and deletable. Any other status is libvirt's
 * to reconnect to.
 */
import { readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { qemuOfRoot, qemuStateEntries } from './embedded-root-orphans.js';

/** Removes the status of every start a kill interrupted in `root` (call it only for a root no process holds); the domains' names. */
export function clearInterruptedStarts(root: string): string[] {
  const { dir, entries } = qemuStateEntries(root);
  const cleared: string[] = [];
  for (const entry of entries) {
    if (!entry.endsWith('.xml')) continue;
    let head: string;
    try {
      head = readFileSync(path.join(dir, entry), 'utf8').slice(0, 4096);
    } catch {
      continue;
    }
    const status = /<domstatus\b([^>]*)>/.exec(head)?.[1] ?? '';
    const attribute = (name: string): string | undefined => new RegExp(`\\b${name}='([^']*)'`).exec(status)?.[1];
    if (attribute('state') !== 'paused' || attribute('reason') !== 'starting up') continue;
    if (qemuOfRoot(Number(attribute('pid') ?? '0'), root)) continue;
    const name = entry.slice(0, -'.xml'.length);
    rmSync(path.join(dir, entry), { force: true });
    rmSync(path.join(dir, `${name}.pid`), { force: true });
    cleared.push(name);
  }
  return cleared;
}
