/**
 * The root directory of libvirt's embedded QEMU driver
 * (`qemu:///embed?root=DIR`): its own qemu.conf, state, logs and capability
 * cache, in novalet's process, with no libvirtd.
 */
import { mkdir, readFile, writeFile, rename } from 'node:fs/promises';
import path from 'node:path';
import { NovaletError } from '../../config/novalet-error.js';
import { embeddedDriverState } from './embedded-driver-state.js';
import { embeddedRootHolder } from './embedded-root-lock.js';
import { clearInterruptedStarts } from './embedded-root-stuck-starts.js';

/**
 * DIR/etc/qemu.conf as these hosts need it (ENVIRONMENT.md):
 * - stdio_handler "file": QEMU's output goes to DIR/log/qemu/NAME.log directly;
 *   the default hands it to virtlogd, which does not run beside an embedded driver.
 * - user/group root: QEMU runs as novalet's own user rather than libvirt-qemu,
 *   so it can read the images and write the logs novalet creates.
 * - security_driver "none": no AppArmor/SELinux labelling, which needs the
 *   system daemon's profiles.
 * - cgroup_controllers empty: no per-domain cgroups, which need machined or a
 *   delegated cgroup tree.
 * - namespaces empty: no private /dev per QEMU. libvirt would rebuild /dev
 *   for each guest by moving mounts, which fails where /dev/kvm is itself a
 *   bind mount (a container passing the device in, or a test hiding it).
 * - dynamic_ownership and remember_owner off: QEMU runs as root, so there is
 *   nothing to chown, and libvirt would otherwise keep the original owners in
 *   trusted.libvirt.security.* xattrs on every disk, kernel and log file.
 *   A run killed before libvirt restored them leaves those behind, and the
 *   next start warns about them from a forked child, over the command's
 *   output ("virSecurityValidateTimestamp: Invalid XATTR timestamp").
 */
export const EMBEDDED_QEMU_CONF = [
  '# Written by novalet for libvirt\'s embedded QEMU driver; rewritten when it differs.',
  'stdio_handler = "file"',
  'user = "root"',
  'group = "root"',
  'security_driver = "none"',
  'cgroup_controllers = [ ]',
  'namespaces = [ ]',
  'dynamic_ownership = 0',
  'remember_owner = 0',
  '',
].join('\n');

/** The connection URI of the embedded driver rooted at `dir` (an absolute path). */
export function embeddedUri(dir: string): string {
  // libvirt unescapes the query; escape what would end or split it.
  const escaped = dir
    .split('/')
    .map((part) => encodeURIComponent(part))
    .join('/');
  return `qemu:///embed?root=${escaped}`;
}

/** The root directory of an embedded URI, or null for any other URI. */
export function embeddedRootOf(uri: string): string | null {
  const match = /^qemu:\/\/\/embed\?(?:.*&)?root=([^&]*)/.exec(uri);
  return match?.[1] === undefined ? null : decodeURIComponent(match[1]);
}

/**
 * Creates DIR and DIR/etc/qemu.conf (only rewriting the file when its content
 * differs, atomically), clears the starts a kill left half-way when no
 * process holds the root (embedded-root-stuck-starts.ts), and returns the
 * URI to open. DIR must be absolute.
 */
export async function prepareEmbeddedRoot(dir: string): Promise<string> {
  if (!path.isAbsolute(dir)) {
    throw new NovaletError(
      'EMBEDDED_ROOT_NOT_ABSOLUTE',
      `The embedded libvirt root "${dir}" is not an absolute path.`,
      'Give an absolute directory, such as /var/lib/novalet/libvirt.',
    );
  }
  const etc = path.join(dir, 'etc');
  const conf = path.join(etc, 'qemu.conf');
  try {
    await mkdir(etc, { recursive: true, mode: 0o755 });
    const current = await readFile(conf, 'utf8').catch(() => null);
    if (current !== EMBEDDED_QEMU_CONF) {
      const temporary = `${conf}.${process.pid}.tmp`;
      await writeFile(temporary, EMBEDDED_QEMU_CONF, { mode: 0o644 });
      await rename(temporary, conf);
    }
  } catch (error) {
    throw new NovaletError(
      'EMBEDDED_ROOT_UNWRITABLE',
      `novalet could not prepare the embedded libvirt root ${dir} (${(error as Error).message}).`,
      'Run novalet as root, or choose a directory it may create and write.',
    );
  }
  // Never for the root this process embeds already: asking who holds it would drop libvirt's own lock (embedded-root-lock.ts).
  if (embeddedDriverState().root !== dir && embeddedRootHolder(dir) === null) clearInterruptedStarts(dir);
  return embeddedUri(dir);
}
