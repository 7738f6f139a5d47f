/**
 * A command prefix that runs a command with a regular empty file at
 * /dev/kvm, in a private mount namespace (unshare -m; nothing outside it
 * changes): what a container passing a wrong file shows, and KVM unusable
 * for real, so that the TCG fallback and KVM's faults are tested on any
 * host. Where /dev/kvm exists, the file is bind-mounted over it. Where it
 * does not (a host whose KVM module made no device, a container), there is
 * no node to mount over: the namespace gets a /dev of its own (a tmpfs with
 * every host device bind-mounted back) holding the file, so the command
 * sees the same either way.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

const SCRIPT = `set -e
if [ -e /dev/kvm ]; then
  mount --bind "$NOVALET_EMPTY" /dev/kvm
else
  real=$(mktemp -d)
  mount --rbind /dev "$real"
  mount -t tmpfs -o mode=755,size=64k tmpfs /dev
  for e in "$real"/* "$real"/.[!.]*; do
    [ -e "$e" ] || [ -L "$e" ] || continue
    n=\${e##*/}
    if [ -L "$e" ]; then cp -P "$e" "/dev/$n"
    elif [ -d "$e" ]; then mkdir "/dev/$n"; mount --rbind "$e" "/dev/$n"
    else : > "/dev/$n"; mount --bind "$e" "/dev/$n"; fi
  done
  : > /dev/kvm
fi
exec "$@"`;

/** `['unshare', '-m', 'sh', '-c', SCRIPT, 'sh']` with the empty file named in the environment of the script. */
export function hiddenKvmPrefix(): string[] {
  const dir = mkdtempSync(path.join(tmpdir(), 'novalet-nokvm-'));
  const empty = path.join(dir, 'empty');
  writeFileSync(empty, '');
  return ['env', `NOVALET_EMPTY=${empty}`, 'unshare', '-m', 'sh', '-c', SCRIPT, 'sh'];
}
