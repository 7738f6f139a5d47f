import { readdir, access, constants } from 'node:fs/promises';
import path from 'node:path';
import { NovaletError } from '../../config/novalet-error.js';
import { checkLibvirtLibrary, type LibvirtAvailability } from '../libvirt/library.js';

/** The programs and libraries novalet runs instances with, as found on this host. */
export interface HostTools {
  /** Guest architectures with a QEMU system emulator, e.g. x86_64 → /usr/bin/qemu-system-x86_64. */
  qemuEmulators: Record<string, string>;
  qemuImg: string | null;
  libvirt: LibvirtAvailability;
}

const EMULATOR_PREFIX = 'qemu-system-';
// Variants of an emulator that are not a guest architecture of their own.
const NOT_AN_ARCH = /-(microvm|spice)$/;

/** QEMU's binary suffix → the architecture name libvirt and nova use. */
const ARCH_OF_EMULATOR: Record<string, string> = { ppc64: 'ppc64', arm: 'armv7l' };

export async function findQemuEmulators(root: string): Promise<Record<string, string>> {
  const bin = path.join(root, 'usr/bin');
  let names: string[];
  try {
    names = await readdir(bin);
  } catch {
    return {};
  }
  const found: Record<string, string> = {};
  const candidates = names.filter((n) => n.startsWith(EMULATOR_PREFIX) && !NOT_AN_ARCH.test(n)).sort();
  await Promise.all(
    candidates.map(async (name) => {
      const file = path.join(bin, name);
      if (await isExecutable(file)) {
        const suffix = name.slice(EMULATOR_PREFIX.length);
        found[ARCH_OF_EMULATOR[suffix] ?? suffix] = path.join('/usr/bin', name);
      }
    }),
  );
  return found;
}

async function isExecutable(file: string): Promise<boolean> {
  try {
    await access(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

export async function probeHostTools(root = '/'): Promise<HostTools> {
  const qemuImgFile = path.join(root, 'usr/bin/qemu-img');
  const [qemuEmulators, hasQemuImg] = await Promise.all([findQemuEmulators(root), isExecutable(qemuImgFile)]);
  return {
    qemuEmulators,
    qemuImg: hasQemuImg ? '/usr/bin/qemu-img' : null,
    libvirt: checkLibvirtLibrary(),
  };
}

/** The QEMU system emulator for guests of `arch`; NO_EMULATOR when none is installed. */
export function emulatorFor(emulators: Readonly<Record<string, string>>, arch: string): string {
  const emulator = emulators[arch];
  if (emulator !== undefined) return emulator;
  throw new NovaletError(
    'NO_EMULATOR',
    `No QEMU system emulator for ${arch} guests is installed here.`,
    `Install QEMU's system emulator for ${arch} (on Debian: qemu-system-x86 for x86 guests, qemu-system-arm for Arm ones), or use an image of an architecture this host emulates.`,
  );
}
