/**
 * nova's ImagePropertiesFilter (nova/scheduler/filters/image_props_filter.py):
 * an image that names an architecture (`hw_architecture`, else
 * `[filter_scheduler] image_properties_default_architecture`), a
 * hypervisor type (`img_hv_type`) or a VM mode (`hw_vm_mode`) passes only
 * hosts whose `supported_instances` has an entry holding every one named —
 * each canonicalised as nova's fields do (i386 → i686, amd64 → x86_64,
 * xapi → xen, hv → hvm, …) — and, with `img_hv_requested_version`, whose
 * hypervisor version satisfies it. This is the filter that keeps a
 * KVM-only image (`img_hv_type=kvm`) off a host whose KVM does not work:
 * such a host advertises only `qemu`.
 */
import type { HostView } from '../host-state/host-view.js';
import type { HostFilter } from './host-filter.js';
import { versionSatisfies, versionString } from './version-predicate.js';

/** nova.objects.fields.Architecture.ALL. */
const ARCHITECTURES = new Set(['alpha', 'armv6', 'armv7l', 'armv7b', 'aarch64', 'cris', 'i686', 'ia64', 'lm32', 'm68k', 'microblaze', 'microblazeel', 'mips', 'mipsel', 'mips64', 'mips64el', 'openrisc', 'parisc', 'parisc64', 'ppc', 'ppcle', 'ppc64', 'ppc64le', 'ppcemb', 's390', 's390x', 'sh4', 'sh4eb', 'sparc', 'sparc64', 'unicore32', 'x86_64', 'xtensa', 'xtensaeb']);
/** nova.objects.fields.HVType.ALL. */
const HV_TYPES = new Set(['baremetal', 'bhyve', 'docker', 'fake', 'hyperv', 'ironic', 'kqemu', 'kvm', 'lxc', 'lxd', 'openvz', 'parallels', 'virtuozzo', 'phyp', 'qemu', 'test', 'uml', 'vbox', 'vmware', 'xen', 'zvm', 'prsm']);
/** nova.objects.fields.VMMode.ALL. */
const VM_MODES = new Set(['hvm', 'xen', 'uml', 'exe']);

type Canonical = { value: string | null } | { error: string };

/** Architecture.canonicalize. */
export function canonicalArchitecture(name: string | undefined): Canonical {
  if (name === undefined) return { value: null };
  let arch = name.toLowerCase();
  if (['i386', 'i486', 'i586', 'x86_32', 'x86_32p'].includes(arch)) arch = 'i686';
  if (arch === 'amd64') arch = 'x86_64';
  return ARCHITECTURES.has(arch) ? { value: arch } : { error: `hw_architecture '${name}' is not an architecture nova knows` };
}

/** HVType.canonicalize. */
export function canonicalHvType(name: string | undefined): Canonical {
  if (name === undefined) return { value: null };
  let type = name.toLowerCase();
  if (type === 'xapi') type = 'xen';
  return HV_TYPES.has(type) ? { value: type } : { error: `img_hv_type '${name}' is not a hypervisor type nova knows` };
}

/** VMMode.canonicalize. */
export function canonicalVmMode(name: string | undefined): Canonical {
  if (name === undefined) return { value: null };
  let mode = name.toLowerCase();
  if (mode === 'pv') mode = 'xen';
  if (mode === 'hv' || mode === 'baremetal') mode = 'hvm';
  return VM_MODES.has(mode) ? { value: mode } : { error: `hw_vm_mode '${name}' is not a VM mode nova knows` };
}

function advertised(host: HostView): string {
  const entries = host.report.supported_instances.map((s) => `[${s.join(', ')}]`);
  return entries.length > 0 ? entries.join(', ') : 'nothing';
}

/** `defaultArchitecture`: `[filter_scheduler] image_properties_default_architecture` (null: none). */
export function imagePropertiesFilter(defaultArchitecture: string | null): HostFilter {
  return {
    name: 'ImagePropertiesFilter',
    hostPasses(host, spec) {
      const props = spec.imageProperties;
      const wanted = [canonicalArchitecture(props.hw_architecture ?? defaultArchitecture ?? undefined), canonicalHvType(props.img_hv_type), canonicalVmMode(props.hw_vm_mode)];
      const invalid = wanted.find((w): w is { error: string } => 'error' in w);
      if (invalid) return `the image's ${invalid.error}`;
      const named = wanted.map((w) => (w as { value: string | null }).value).filter((v): v is string => v !== null);
      if (named.length === 0) return null;
      const supported = host.report.supported_instances;
      if (supported.length === 0) return `the image asks for ${named.join(', ')} and the host advertises no supported instances`;
      const required = props.img_hv_requested_version;
      const version = host.report.hypervisor_version;
      let versionProblem: string | null = null;
      for (const entry of supported) {
        // nova's _compare_props: each value named is somewhere in the entry.
        if (!named.every((v) => (entry as string[]).includes(v))) continue;
        if (!version || !required) return null;
        const outcome = versionSatisfies(versionString(version), required);
        if ('error' in outcome) return `the image's img_hv_requested_version cannot be checked: ${outcome.error}`;
        if (outcome.satisfied) return null;
        versionProblem = `its hypervisor version ${versionString(version)} does not satisfy the image's img_hv_requested_version '${required}'`;
      }
      return versionProblem ?? `the image asks for ${named.join(', ')}; the host supports ${advertised(host)}`;
    },
  };
}
