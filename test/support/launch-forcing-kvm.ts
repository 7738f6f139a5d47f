/**
 * Run inside a mount namespace whose /dev/kvm is hidden: launches the test
 * guest as if novalet's verdict had said KVM is usable, so that libvirt
 * itself refuses KVM, and prints the error's code and message as JSON.
 * This is how the mapping of libvirt's own words to the fault is tested
 * against the real libvirt.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseConfigText } from '../../config/load-config.js';
import { LibvirtDriver } from '../../hypervisor/instance/libvirt-driver.js';
import { validateInstanceSpec } from '../../hypervisor/instance/spec.js';
import { openEmbeddedRootFromPool } from '../../hypervisor/libvirt/embedded-root-pool.js';
import { decideVirtType } from '../../hypervisor/virt-type/decision.js';
import { testGuestCmdline, testGuestFiles } from '../../hypervisor/virt-type/test-guest.js';

import { runForkSafe } from '../../hypervisor/libvirt/fork-safety.js';

const relaunched = await runForkSafe();
if (relaunched !== null) process.exit(relaunched);
const [guestDir, poolBase] = process.argv.slice(2) as [string, string];
const state = mkdtempSync(path.join(tmpdir(), 'novalet-forced-kvm-'));
const connection = (await openEmbeddedRootFromPool(poolBase)).connection;
const files = testGuestFiles(guestDir);
const launcherWith = (cpuMode: string) => {
  const config = parseConfigText(`[DEFAULT]\nstate_path = ${state}\n[libvirt]\nvirt_type = kvm\ncpu_mode = ${cpuMode}\n`, 'forced.conf').values;
  const verdict = { usable: true, reasons: [] };
  return new LibvirtDriver({
    connection,
    config,
    host: { arch: 'x86_64', verdict, virtType: decideVirtType({ libvirt: config.libvirt, verdict, hostArch: 'x86_64' }), qemuEmulators: { x86_64: '/usr/bin/qemu-system-x86_64' } },
    instancesPath: path.join(state, 'instances'),
  });
};
// With cpu_mode = none libvirt first refuses at define or start — worded one way without a
// machine type and another with one; with host-model, at the guest CPU's domain capabilities.
const outcomes: Record<string, unknown>[] = [];
for (const [cpuMode, machine] of [['none', undefined], ['none', 'pc'], ['host-model', undefined]] as const) {
  const launcher = launcherWith(cpuMode);
  const spec = validateInstanceSpec({
    name: 'forced',
    vcpus: 1,
    memoryMiB: 128,
    kernel: files.kernel,
    ramdisk: files.initramfs,
    cmdline: testGuestCmdline('forced'),
    imageProperties: { hw_machine_type: machine },
  });
  try {
    await launcher.spawn(spec);
    outcomes.push({ launched: true });
    await launcher.destroy(spec.uuid);
  } catch (err) {
    const e = err as { code?: string; message: string };
    const left = await connection.lookupByUuid(spec.uuid);
    outcomes.push({ code: e.code, message: e.message, leftDomain: left !== null });
    await left?.free();
  }
}
await connection.close();
process.stdout.write(`${JSON.stringify(outcomes)}\n`);
