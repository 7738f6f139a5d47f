import { validateInstanceSpec } from '../../hypervisor/compute-driver.js';
import { FakeComputeDriver } from '../support/fake-compute-driver.js';
import { computeDriverContract } from './compute-driver-contract.js';

computeDriverContract('the fake driver', async () => {
  const driver = new FakeComputeDriver();
  return {
    driver,
    spec: (name) => validateInstanceSpec({ name, vcpus: 1, memoryMiB: 256, kernel: '/boot/vmlinuz', virtType: 'qemu' }),
    guestPowersOff: async (uuid) => driver.guestPowersOff(uuid),
    bootMs: 1000,
    teardown: async () => undefined,
  };
});
