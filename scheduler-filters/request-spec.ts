/**
 * nova's RequestSpec, as much of it as the filters and weighers read: what a
 * `boot` (or a `reschedule`) asks of a host (WIRE.md's `instance` object
 * and zone), and which hosts are out of the running already.
 */
export interface RequestSpec {
  uuid: string;
  flavor: { name: string; vcpus: number; memory_mb: number; root_gb: number; extra_specs: Record<string, string> };
  /** The image's properties (hw_architecture, img_hv_type, hw_vm_mode, hw_cpu_model, …); empty for a direct kernel boot without any. */
  imageProperties: Record<string, string>;
  /** The zone asked for; null for any. */
  availabilityZone: string | null;
  /** Hosts tried already (a reschedule's): never chosen again. */
  ignoreHosts: readonly string[];
}
