/**
 * The boundary between the compute agent and the hypervisor, as nova's
 * `nova/virt/driver.py` ComputeDriver: what the agent may ask of a host's
 * hypervisor, and nothing of how. agent/ imports this file only. The
 * interface lives in instance/driver-interface.ts, so that no room imports
 * this top file, and is re-exported here; the libvirt implementation is
 * instance/libvirt-driver.ts, assembled by compute-host.ts; a fake one
 * (test/support/fake-compute-driver.ts) lets the agent's own logic be tested
 * without libvirt, and the same contract tests
 * (test/hypervisor/compute-driver-contract.ts) hold both to this file.
 *
 * Every method that names an instance throws a NovaletError with code
 * INSTANCE_NOT_FOUND when the driver has no such instance, except
 * destroy(), which, as nova's, is done when there is nothing left.
 */
export type {
  ComputeDriver,
  DriverHostCapabilities,
  DriverInstance,
  InstanceLifecycleEvent,
  InstanceTransition,
  LifecycleSubscription,
  PowerState,
  RebootOptions,
  RebootType,
  SpawnedInstance,
  SpawnOptions,
} from './instance/driver-interface.js';
export { validateInstanceSpec, type InstanceSpec, type ValidInstanceSpec } from './instance/spec.js';
