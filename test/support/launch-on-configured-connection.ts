/**
 * Boots the test guest through the connection [libvirt] connection_uri names
 * (the config file is the first argument), waits for its marker, deletes it,
 * and prints what happened as JSON. The libvirtd test runs it inside the
 * mount namespace where its private libvirtd's socket is /run/libvirt.
 */
import path from 'node:path';
import { loadConfig } from '../../config/load-config.js';
import { waitForConsoleLine } from '../../hypervisor/instance/console-follow.js';
import { InstanceLauncher } from '../../hypervisor/instance/libvirt-driver.js';
import { validateInstanceSpec } from '../../hypervisor/instance/spec.js';
import { runForkSafe } from '../../hypervisor/libvirt/fork-safety.js';
import { openConfiguredConnection } from '../../hypervisor/libvirt/open-configured-connection.js';
import { READY_MARKER, testGuestCmdline, testGuestFiles } from '../../hypervisor/virt-type/test-guest.js';

const relaunched = await runForkSafe();
if (relaunched !== null) process.exit(relaunched);
const [configFile, guestDir] = process.argv.slice(2) as [string, string];
const config = loadConfig({ configFiles: [configFile] }).values;
const connection = await openConfiguredConnection(config);
const files = testGuestFiles(guestDir);
const launcher = new InstanceLauncher({
  connection,
  config,
  host: { arch: 'x86_64', verdict: { usable: false, reasons: [] }, qemuEmulators: { x86_64: '/usr/bin/qemu-system-x86_64' } },
  instancesPath: path.join(config.DEFAULT.state_path, 'instances'),
});
const spec = validateInstanceSpec({ name: 'via-libvirtd', vcpus: 1, memoryMiB: 256, kernel: files.kernel, ramdisk: files.initramfs, cmdline: testGuestCmdline('via-libvirtd'), virtType: 'qemu' });
const outcome: Record<string, unknown> = { uri: connection.uri, embedded: connection.embedded };
try {
  const launched = await launcher.spawn(spec);
  outcome.virtType = launched.virtType;
  outcome.marker = await waitForConsoleLine(launched.consoleLog, READY_MARKER, 90_000);
} catch (err) {
  outcome.error = (err as Error).message;
} finally {
  await launcher.delete(spec.uuid);
  outcome.leftDomain = (await connection.lookupByUuid(spec.uuid)) !== null;
  await connection.close();
}
process.stdout.write(`${JSON.stringify(outcome)}\n`);
