/**
 * Which KVM modules the kernel has, from `<root>/sys/module`: the generic
 * `kvm` and the vendor module (kvm_intel, kvm_amd, kvm_pvm) with its
 * `parameters/nested`. Built-in modules show there too as long as they have
 * parameters, which all of these do.
 *
 * Should more than one vendor module be present, kvm_intel and kvm_amd are
 * named before kvm_pvm: they are what an ordinary guest needs.
 */
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import type { KvmModuleFacts, KvmModuleName } from './facts.js';

const VENDOR_MODULES: readonly KvmModuleName[] = ['kvm_intel', 'kvm_amd', 'kvm_pvm'];

async function isDirectory(file: string): Promise<boolean> {
  try {
    return (await stat(file)).isDirectory();
  } catch {
    return false;
  }
}

async function readTrimmed(file: string): Promise<string | null> {
  try {
    return (await readFile(file, 'utf8')).trim();
  } catch {
    return null;
  }
}

/** `nested` as the kernel prints it: Y/N (kvm_intel, bool) or 1/0 (kvm_amd, int). */
export function parseNestedParameter(raw: string | null): boolean | null {
  if (raw === null) return null;
  const value = raw.trim();
  if (/^(y|yes|1|on|true)$/i.test(value)) return true;
  if (/^(n|no|0|off|false)$/i.test(value)) return false;
  return null;
}

export async function probeKvmModule(root: string): Promise<KvmModuleFacts> {
  const modules = path.join(root, 'sys/module');
  // Everything at once: whether each module is there and each one's `nested`.
  const [kvmCorePresent, vendors] = await Promise.all([
    isDirectory(path.join(modules, 'kvm')),
    Promise.all(
      VENDOR_MODULES.map(async (name) => {
        const [present, nestedRaw] = await Promise.all([
          isDirectory(path.join(modules, name)),
          readTrimmed(path.join(modules, name, 'parameters/nested')),
        ]);
        return { name, present, nestedRaw };
      }),
    ),
  ]);
  const vendor = vendors.find((candidate) => candidate.present);
  const nestedRaw = vendor?.nestedRaw ?? null;
  return { name: vendor?.name ?? null, kvmCorePresent, nestedRaw, nested: parseNestedParameter(nestedRaw) };
}
