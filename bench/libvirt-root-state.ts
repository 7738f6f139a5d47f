/**
 * What a killed agent can leave in its embedded libvirt root (found by
 * bench/durability.ts), read from libvirt's own status files
 * (`<root>/run/qemu/<name>.xml`, `<domstatus>`):
 *
 * - a domain whose start was cut off before QEMU ran: the process embedding
 *   libvirt died while the forked QEMU waited for its handshake ("libvirtd
 *   quit during handshake" in its log), and libvirt 9.0 keeps it `paused
 *   (starting up)`, `pid='0'`, with its async `start` job, in every process
 *   that embeds the root later: each destroy or undefine of it waits 30 s
 *   for the state change lock and fails ("cannot acquire state change lock");
 * - the status file of a domain killed during its destroy, its QEMU gone and
 *   its definition removed: libvirt fails to load it ("Failed to load config
 *   for domain") at every start.
 *
 * Removing such a status file while no process holds the root makes libvirt
 * load the domain as shut off (or not at all): the benchmarks do that to
 * keep their roots usable, and count what they removed.
 */
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';

function statusFiles(root: string): { name: string; file: string; text: string }[] {
  const dir = path.join(root, 'run', 'qemu');
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => f.endsWith('.xml'))
    .map((f) => ({ name: f.slice(0, -'.xml'.length), file: path.join(dir, f), text: readFileSync(path.join(dir, f), 'utf8') }));
}

function alive(pid: number): boolean {
  if (pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

const pidOf = (text: string) => Number(/<domstatus [^>]*pid='(\d+)'/.exec(text)?.[1] ?? 0);

/** Domains stuck `paused (starting up)` with no QEMU, their start job begun more than `olderThanMs` ago (so not a start under way). */
export function stuckDomains(root: string, olderThanMs = 10_000, now = Date.now()): string[] {
  return statusFiles(root)
    .filter(({ text }) => {
      const job = /<job [^>]*async='start'[^>]*asyncStarted='(\d+)'/.exec(text);
      return /<domstatus [^>]*reason='starting up'/.test(text) && job !== null && now - Number(job[1]) > olderThanMs && !alive(pidOf(text));
    })
    .map((s) => s.name);
}

/** Status files of domains whose QEMU is not running: a stuck start, a destroy cut off. Only while no process holds the root. */
export function deadStatusFiles(root: string): string[] {
  return statusFiles(root)
    .filter(({ text }) => !alive(pidOf(text)))
    .map((s) => s.name);
}

/** Removes the status files (and pid files) of `names`; only while no process holds the root. */
export function removeStatus(root: string, names: readonly string[]): void {
  for (const name of names) {
    for (const ext of ['.xml', '.pid']) rmSync(path.join(root, 'run', 'qemu', `${name}${ext}`), { force: true });
  }
}
