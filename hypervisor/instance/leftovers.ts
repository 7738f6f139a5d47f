import { readFileSync } from 'node:fs';
import { readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import type { LibvirtConnection } from '../libvirt/connection.js';
import { NOVALET_DOMAIN_PREFIX } from './domain-xml.js';
import { NOVALET_METADATA_URI, parseOwner, type DomainOwner } from './metadata.js';

/**
 * The start-up sweep: what a killed `novalet run` or KVM self-test left
 * (kill -9, a power cut, a crash) — its domain, still running after its
 * process died, and its files. A domain is swept only when its novalet
 * metadata names it a command's or the self-test's and its process is gone
 * (another boot, or no such process). The compute service's instances, and
 * domains novalet did not make, are never touched, whichever libvirt the
 * sweep runs against.
 */

/** The self-test's work folders under state_path: `kvm-self-test-<pid>-XXXXXX` (self-test-boot.ts). */
const SELF_TEST_DIR = /^kvm-self-test-(\d+)-/;

export interface SweepPlaces {
  connection: LibvirtConnection;
  bootId: string;
  /** Where commands keep their instances' folders (compute-host.ts instancesPathFor 'command'). */
  commandInstancesPath: string;
  /** state_path, where the self-test keeps its work folders. */
  stateDir: string;
}

export interface SweepResult {
  /** The domains removed, by name. */
  domains: string[];
  /** The folders removed. */
  folders: string[];
}

/** True when the process that made a domain or folder no longer exists. */
export function processIsGone(pid: number, bootId: string | null, thisBoot: string): boolean {
  if (bootId !== null && bootId !== thisBoot) return true;
  if (pid === process.pid) return false;
  try {
    process.kill(pid, 0);
  } catch (err) {
    // EPERM: it exists, as another user's process.
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
  // A killed process nobody reaped (a container's init may not) is a zombie: gone all the same.
  return zombie(pid);
}

function zombie(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // "pid (comm) S …": the state follows the last ')', as comm may hold one.
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'Z';
  } catch {
    return false;
  }
}

function isLeftover(owner: DomainOwner | null, thisBoot: string): owner is DomainOwner {
  return owner !== null && owner.kind !== 'service' && processIsGone(owner.pid, owner.bootId, thisBoot);
}

export async function sweepLeftovers(places: SweepPlaces): Promise<SweepResult> {
  const result: SweepResult = { domains: [], folders: [] };
  const domains = await places.connection.listAllDomains();
  try {
    for (const domain of domains) {
      // One metadata call per domain novalet named, none for the rest: a shared libvirtd may hold many.
      if (!domain.name.startsWith(NOVALET_DOMAIN_PREFIX)) continue;
      let metadata: string | null;
      try {
        metadata = await domain.getMetadata('element', NOVALET_METADATA_URI);
      } catch {
        // Gone meanwhile, or no novalet metadata: not ours to judge.
        continue;
      }
      const owner = parseOwner(metadata);
      if (!isLeftover(owner, places.bootId)) continue;
      // One that libvirt cannot remove now is tried again by the next sweep; it never stops a start.
      if (!(await domain.remove().then(() => true, () => false))) continue;
      result.domains.push(domain.name);
      if (owner.kind === 'command') {
        const folder = path.join(places.commandInstancesPath, domain.uuid);
        await rm(folder, { recursive: true, force: true });
        result.folders.push(folder);
      }
    }
  } finally {
    for (const domain of domains) domain.free();
  }
  let entries: string[] = [];
  try {
    entries = await readdir(places.stateDir);
  } catch {
    // No state folder yet: nothing was left in it.
  }
  for (const entry of entries) {
    const pid = SELF_TEST_DIR.exec(entry)?.[1];
    if (pid === undefined || !processIsGone(Number(pid), null, places.bootId)) continue;
    const folder = path.join(places.stateDir, entry);
    await rm(folder, { recursive: true, force: true });
    result.folders.push(folder);
  }
  return result;
}
