/**
 * The libvirt ComputeDriver held to the interface's contract, on real
 * libvirt (embedded QEMU driver through koffi) and real QEMU, with the test
 * guest under TCG (which every host has), assembled as the service does.
 */
import { validateInstanceSpec } from '../../hypervisor/compute-driver.js';
import { testGuestCmdline, testGuestFiles } from '../../hypervisor/virt-type/test-guest.js';
import { TEST_GUEST_DIR } from '../guest/test-guest.js';
import { computeDriverContract } from '../hypervisor/compute-driver-contract.js';
import { testComputeHost, testConfig } from './launch-support.js';

const guest = testGuestFiles(TEST_GUEST_DIR);

computeDriverContract('the libvirt driver', async () => {
  const { config } = testConfig();
  const host = await testComputeHost(config, 'recorded');
  return {
    driver: host.driver,
    spec: (name) => validateInstanceSpec({ name, vcpus: 1, memoryMiB: 256, kernel: guest.kernel, ramdisk: guest.initramfs, cmdline: testGuestCmdline(name), virtType: 'qemu' }),
    guestPowersOff: async (uuid) => {
      // The ACPI power button pressed behind the driver's back; the booted test guest powers itself off.
      const domain = await host.connection.lookupByUuid(uuid);
      await domain!.shutdown();
      await domain!.free();
    },
    bootMs: 90_000,
    teardown: () => host.close(),
  };
});
