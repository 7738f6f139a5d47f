/**
 * What the options that may be left unset mean, in one place, so that no
 * other folder re-derives them:
 *
 * - `[libvirt] connection_uri` empty: libvirt's QEMU driver embedded in
 *   novalet's process, `qemu:///embed?root=<state_path>/libvirt`;
 * - `[DEFAULT] transport_url` unset (or empty): oslo.messaging's default,
 *   `rabbit://guest:guest@localhost:5672/`;
 * - `cpu_allocation_ratio` and friends unset (or 0.0, as nova treats it):
 *   the matching `initial_*_allocation_ratio`.
 *
 * The effective CPU mode is `effectiveCpuMode` in cpu-compatibility-rules.ts.
 */

import type { NovaletConfig } from './novalet-config.js';

export const DEFAULT_TRANSPORT_URL = 'rabbit://guest:guest@localhost:5672/';

export function effectiveConnectionUri(values: NovaletConfig): string {
  const uri = values.libvirt.connection_uri;
  return uri !== '' ? uri : `qemu:///embed?root=${values.DEFAULT.state_path}/libvirt`;
}

/** True when novalet embeds libvirt's QEMU driver rather than talking to a libvirtd. */
export function usesEmbeddedLibvirt(values: NovaletConfig): boolean {
  return effectiveConnectionUri(values).startsWith('qemu:///embed');
}

export function effectiveTransportUrl(values: NovaletConfig): string {
  const url = values.DEFAULT.transport_url;
  return url === null || url === '' ? DEFAULT_TRANSPORT_URL : url;
}

export interface AllocationRatios {
  cpu: number;
  ram: number;
  disk: number;
}

export function effectiveAllocationRatios(values: NovaletConfig): AllocationRatios {
  const d = values.DEFAULT;
  const pick = (ratio: number | null, initial: number): number => (ratio === null || ratio === 0 ? initial : ratio);
  return {
    cpu: pick(d.cpu_allocation_ratio, d.initial_cpu_allocation_ratio),
    ram: pick(d.ram_allocation_ratio, d.initial_ram_allocation_ratio),
    disk: pick(d.disk_allocation_ratio, d.initial_disk_allocation_ratio),
  };
}

/**
 * The machine type `[libvirt] hw_machine_type` gives guests of `arch`: its
 * entries are `arch=machine`, as nova reads them; null when none is set.
 */
export function configuredMachineType(entries: readonly string[] | null, arch: string): string | null {
  for (const entry of entries ?? []) {
    const at = entry.indexOf('=');
    if (at > 0 && entry.slice(0, at).trim() === arch && entry.slice(at + 1).trim() !== '') return entry.slice(at + 1).trim();
  }
  return null;
}
