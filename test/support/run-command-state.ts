/**
 * What the `novalet run` tests share: a state folder of their own, the test
 * guest's kernel arguments, and the checks that nothing is left (QEMU
 * processes, instance folders, domains in the command's embedded roots).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { testGuestFiles } from '../../hypervisor/virt-type/test-guest.js';
import { TEST_GUEST_DIR } from '../guest/test-guest.js';

export const guest = testGuestFiles(TEST_GUEST_DIR);

export function stateWith(extra = ''): { conf: string; state: string } {
  const state = mkdtempSync(path.join(tmpdir(), 'novalet-run-'));
  const conf = path.join(state, 'novalet.conf');
  writeFileSync(conf, `[DEFAULT]\nstate_path = ${state}\n[libvirt]\nkvm_selftest_guest_dir = ${TEST_GUEST_DIR}\nkvm_selftest_timeout = 8\n${extra}\n`);
  return { conf, state };
}

export function kernelArgs(name: string): string[] {
  return ['--kernel', guest.kernel, '--ramdisk', guest.initramfs, '--cmdline', `console=ttyS0 novalet.name=${name}`];
}

/** QEMU processes started for instances (or the self-test) of this state directory. */
export function qemuFor(state: string): string[] {
  try {
    return execFileSync('pgrep', ['-f', `qemu-system.*${state}`], { encoding: 'utf8' }).trim().split('\n').filter(Boolean);
  } catch {
    return [];
  }
}

/** Instance folders of `run` and self-test work folders left in this state directory. */
export function leftovers(state: string): string[] {
  const dir = path.join(state, 'run/instances');
  const instances = existsSync(dir) ? readdirSync(dir) : [];
  const selfTests = readdirSync(state).filter((name) => name.startsWith('kvm-self-test-'));
  return [...instances, ...selfTests];
}

/** Domain definitions left in the command's embedded roots under this state directory. */
export function definedDomains(state: string): string[] {
  const base = path.join(state, 'run/libvirt');
  if (!existsSync(base)) return [];
  return readdirSync(base)
    .filter((slot) => !slot.endsWith('.claim'))
    .flatMap((slot) => {
      const dir = path.join(base, slot, 'etc/qemu');
      return existsSync(dir) ? readdirSync(dir).filter((name) => name.endsWith('.xml')) : [];
    });
}
