/**
 * Every option novalet reads, in one table: section, name, type, default,
 * deprecated names, secret flag and help. Options nova has keep nova's name,
 * type, default and meaning (and nova's help wording, adapted); options
 * novalet adds are marked `novaletOwn` and live in the same sections.
 *
 * The sample configuration (config/sample-config.ts) and `novalet config
 * show` (config/config-report.ts) are generated from this table.
 */

import { hostname } from 'node:os';
import type { NovaletConfig, SectionName } from './novalet-config.js';

export interface Choice {
  value: string;
  description?: string;
}

export type OptionType =
  | { kind: 'string' }
  | { kind: 'int'; min?: number; max?: number }
  | { kind: 'float'; min?: number }
  | { kind: 'bool' }
  /** Comma-separated, items stripped; `lowerCaseItems` as nova does for cpu_model_extra_flags. */
  | { kind: 'list'; lowerCaseItems?: boolean; /** oslo's ListOpt(item_type=Integer(min=1, max=65535)): every item a port number. */ portItems?: boolean }
  /** A string that must be exactly one of the choices. */
  | { kind: 'choice'; choices: readonly Choice[] }
  /** oslo.config's PortOpt: an integer port number. */
  | { kind: 'port'; min: number; max: number };

export interface DeprecatedName {
  name: string;
  /** The section the old name lived in; the option's own section when omitted. */
  section?: string;
}

export interface OptionDefinition {
  section: SectionName;
  name: string;
  type: OptionType;
  /** The typed default; null means unset (see the help for what unset means). */
  default: unknown;
  /** How the sample shows the default when the real one depends on the machine. */
  sampleDefault?: string;
  deprecatedNames: readonly DeprecatedName[];
  /** Never printed in full: URL passwords are masked, other values replaced by ***. */
  secret: boolean;
  help: string;
  /** True when nova has no such option. */
  novaletOwn: boolean;
}

type Key<S extends SectionName> = Extract<keyof NovaletConfig[S], string>;

interface TypedOptionDefinition<S extends SectionName, K extends Key<S>> extends OptionDefinition {
  section: S;
  name: K;
  default: NovaletConfig[S][K];
  /** `section.name`, kept literal so the table is checked against NovaletConfig. */
  key: `${S}.${K}`;
}

function option<S extends SectionName, K extends Key<S>>(def: {
  section: S;
  name: K;
  type: OptionType;
  default: NovaletConfig[S][K];
  sampleDefault?: string;
  deprecatedNames?: readonly DeprecatedName[];
  secret?: boolean;
  help: readonly string[];
  novaletOwn?: boolean;
}): TypedOptionDefinition<S, K> {
  const result: TypedOptionDefinition<S, K> = {
    section: def.section,
    name: def.name,
    type: def.type,
    default: def.default,
    deprecatedNames: def.deprecatedNames ?? [],
    secret: def.secret ?? false,
    help: def.help.join('\n'),
    novaletOwn: def.novaletOwn ?? false,
    key: `${def.section}.${def.name}`,
  };
  if (def.sampleDefault !== undefined) result.sampleDefault = def.sampleDefault;
  return result;
}

const nonNegativeFloat: OptionType = { kind: 'float', min: 0 };

const TABLE = [
  // ---------------------------------------------------------------- [DEFAULT]
  option({
    section: 'DEFAULT',
    name: 'host',
    type: { kind: 'string' },
    default: hostname(),
    sampleDefault: '<hostname>',
    help: [
      'Hostname, FQDN or IP address of this host.',
      '',
      'Used as:',
      '',
      '* the name of the RabbitMQ queue this host consumes (``compute.<host>``)',
      '* the host name in capability reports and instance records',
      '',
      'Must be valid within an AMQP key.',
      '',
      'Possible values:',
      '',
      '* String with hostname, FQDN or IP address. Default is hostname of this host.',
    ],
  }),
  option({
    section: 'DEFAULT',
    name: 'state_path',
    type: { kind: 'string' },
    default: '/var/lib/novalet',
    help: [
      "Top-level directory for maintaining novalet's state.",
      '',
      "nova's default is ``$pybasedir``, the directory its Python package is installed in, which means nothing for novalet; novalet's default is ``/var/lib/novalet``.",
      '',
      'Related options:',
      '',
      '* ``instances_path``',
      '* ``[libvirt] connection_uri``',
    ],
  }),
  option({
    section: 'DEFAULT',
    name: 'instances_path',
    type: { kind: 'string' },
    default: '$state_path/instances',
    help: [
      "Specifies where instances are stored on the hypervisor's disk. It can point to locally attached storage or a directory on NFS.",
      '',
      'Possible values:',
      '',
      "* $state_path/instances where state_path is a config option that specifies the top-level directory for maintaining novalet's state. (default) or Any string representing directory path.",
    ],
  }),
  option({
    section: 'DEFAULT',
    name: 'transport_url',
    type: { kind: 'string' },
    default: null,
    secret: true,
    help: [
      'The network address and optional user credentials for connecting to the messaging backend, in URL format. The expected format is:',
      '',
      'driver://[user:pass@]host:port[,[userN:passN@]hostN:portN]/virtual_host?query',
      '',
      'Example: rabbit://rabbitmq:password@127.0.0.1:5672//',
      '',
      'When unset, ``rabbit://guest:guest@localhost:5672/`` is used, as oslo.messaging does. The hosts of a cluster are shuffled once at start-up, as oslo.messaging does, then tried in turn when one fails.',
    ],
  }),
  option({
    section: 'DEFAULT',
    name: 'report_interval',
    type: { kind: 'int' },
    default: 10,
    help: [
      'Number of seconds indicating how frequently the state of services on a given hypervisor is reported. novalet needs to know this to determine the overall health of the deployment.',
      '',
      'Related Options:',
      '',
      '* service_down_time',
      '  report_interval should be less than service_down_time. If service_down_time is less than report_interval, services will routinely be considered down, because they report in too rarely.',
    ],
  }),
  option({
    section: 'DEFAULT',
    name: 'service_down_time',
    type: { kind: 'int' },
    default: 60,
    help: [
      'Maximum time in seconds since last check-in for up service',
      '',
      "Each compute node periodically sends a capability report based on the specified report interval. If the compute node hasn't reported for more than service_down_time, then the compute node is considered down.",
      '',
      'Related Options:',
      '',
      '* report_interval (service_down_time should not be less than report_interval)',
    ],
  }),
  option({
    section: 'DEFAULT',
    name: 'cpu_allocation_ratio',
    type: nonNegativeFloat,
    default: null,
    help: [
      'Virtual CPU to physical CPU allocation ratio.',
      '',
      'This option is used to influence the hosts selected by the scheduler by configuring the allocation ratio for ``VCPU`` inventory.',
      '',
      'When unset, ``initial_cpu_allocation_ratio`` is used.',
      '',
      'Possible values:',
      '',
      '* Any valid positive integer or float value',
      '',
      'Related options:',
      '',
      '* ``initial_cpu_allocation_ratio``',
    ],
  }),
  option({
    section: 'DEFAULT',
    name: 'ram_allocation_ratio',
    type: nonNegativeFloat,
    default: null,
    help: [
      'Virtual RAM to physical RAM allocation ratio.',
      '',
      'This option is used to influence the hosts selected by the scheduler by configuring the allocation ratio for ``MEMORY_MB`` inventory.',
      '',
      'When unset, ``initial_ram_allocation_ratio`` is used.',
      '',
      'Possible values:',
      '',
      '* Any valid positive integer or float value',
      '',
      'Related options:',
      '',
      '* ``initial_ram_allocation_ratio``',
    ],
  }),
  option({
    section: 'DEFAULT',
    name: 'disk_allocation_ratio',
    type: nonNegativeFloat,
    default: null,
    help: [
      'Virtual disk to physical disk allocation ratio.',
      '',
      'This option is used to influence the hosts selected by the scheduler by configuring the allocation ratio for ``DISK_GB`` inventory.',
      '',
      'When configured, a ratio greater than 1.0 will result in over-subscription of the available physical disk, which can be useful for more efficiently packing instances created with images that do not use the entire virtual disk, such as sparse or compressed images. It can be set to a value between 0.0 and 1.0 in order to preserve a percentage of the disk for uses other than instances.',
      '',
      'When unset, ``initial_disk_allocation_ratio`` is used.',
      '',
      'Possible values:',
      '',
      '* Any valid positive integer or float value',
      '',
      'Related options:',
      '',
      '* ``initial_disk_allocation_ratio``',
    ],
  }),
  option({
    section: 'DEFAULT',
    name: 'initial_cpu_allocation_ratio',
    type: nonNegativeFloat,
    default: 4.0,
    help: [
      'Initial virtual CPU to physical CPU allocation ratio.',
      '',
      'nova uses this only when it first creates the compute node record; novalet uses it whenever ``cpu_allocation_ratio`` is unset.',
      '',
      'Related options:',
      '',
      '* ``cpu_allocation_ratio``',
    ],
  }),
  option({
    section: 'DEFAULT',
    name: 'initial_ram_allocation_ratio',
    type: nonNegativeFloat,
    default: 1.0,
    help: [
      'Initial virtual RAM to physical RAM allocation ratio.',
      '',
      'nova uses this only when it first creates the compute node record; novalet uses it whenever ``ram_allocation_ratio`` is unset.',
      '',
      'Related options:',
      '',
      '* ``ram_allocation_ratio``',
    ],
  }),
  option({
    section: 'DEFAULT',
    name: 'initial_disk_allocation_ratio',
    type: nonNegativeFloat,
    default: 1.0,
    help: [
      'Initial virtual disk to physical disk allocation ratio.',
      '',
      'nova uses this only when it first creates the compute node record; novalet uses it whenever ``disk_allocation_ratio`` is unset.',
      '',
      'Related options:',
      '',
      '* ``disk_allocation_ratio``',
    ],
  }),
  option({
    section: 'DEFAULT',
    name: 'reserved_host_memory_mb',
    type: { kind: 'int', min: 0 },
    default: 512,
    help: [
      'Amount of memory in MB to reserve for the host so that it is always available to host processes. The host resources usage is reported back to the scheduler continuously from the compute node. To prevent the host memory from being considered as available, this option is used to reserve memory for the host.',
      '',
      'Possible values:',
      '',
      '* Any positive integer representing amount of memory in MB to reserve for the host.',
    ],
  }),
  option({
    section: 'DEFAULT',
    name: 'reserved_host_disk_mb',
    type: { kind: 'int', min: 0 },
    default: 0,
    help: [
      'Amount of disk resources in MB to make them always available to host. The disk usage gets reported back to the scheduler from the compute node. To prevent the disk resources from being considered as available, this option can be used to reserve disk space for that host.',
      '',
      'Possible values:',
      '',
      '* Any positive integer representing amount of disk in MB to reserve for the host.',
    ],
  }),
  option({
    section: 'DEFAULT',
    name: 'image_download_idle_timeout',
    type: { kind: 'int', min: 1, max: 86400 },
    default: 60,
    novaletOwn: true,
    help: [
      'Seconds an image download may go without receiving a byte, waiting for the connection and the answer included, before it is given up and nothing of it is kept.',
      '',
      'A server that stalls is given up after this long; one that sends slowly but steadily is ended by ``image_download_timeout``.',
      '',
      'Related options:',
      '',
      '* ``image_download_timeout``',
    ],
  }),
  option({
    section: 'DEFAULT',
    name: 'image_download_timeout',
    type: { kind: 'int', min: 1, max: 604800 },
    default: 3600,
    novaletOwn: true,
    help: [
      'Seconds an image download (or copy of a local image file) into the image cache may take in all, redirects included, before it is given up and nothing of it is kept.',
      '',
      'Raise it for large images on slow links.',
      '',
      'Related options:',
      '',
      '* ``image_download_idle_timeout``',
      '* ``image_download_max_size_mb``',
    ],
  }),
  option({
    section: 'DEFAULT',
    name: 'image_download_max_size_mb',
    type: { kind: 'int', min: 1 },
    default: 1048576,
    novaletOwn: true,
    help: [
      'The largest image, in MB, that is downloaded (or copied from a local file) into the image cache under ``instances_path``/_base; a larger one is refused, and nothing of it is kept.',
      '',
      "The default, 1 TiB, is glance's ``image_size_cap``. Whatever this says, an image never takes more than the free space of the file system of the image cache minus ``reserved_host_disk_mb``, and a server that sends Content-Length must send exactly that many bytes.",
      '',
      'Related options:',
      '',
      '* ``reserved_host_disk_mb``',
      '* ``image_download_timeout``',
    ],
  }),
  option({
    section: 'DEFAULT',
    name: 'image_download_min_rate',
    type: { kind: 'int', min: 0 },
    default: 1024,
    novaletOwn: true,
    help: [
      'The slowest an image download may be, in bytes per second, averaged over ``image_download_min_rate_window``; a slower one is given up (0 disables the check).',
      '',
      "A server that trickles a byte every few seconds never trips ``image_download_idle_timeout`` and would hold a build slot for ``image_download_timeout``; this ends it within a window. curl's ``--speed-limit``/``--speed-time``; glance has no such option.",
      '',
      'Related options:',
      '',
      '* ``image_download_min_rate_window``',
      '* ``image_download_idle_timeout``',
    ],
  }),
  option({
    section: 'DEFAULT',
    name: 'image_download_min_rate_window',
    type: { kind: 'int', min: 1, max: 86400 },
    default: 60,
    novaletOwn: true,
    help: [
      'Seconds over which an image download must average ``image_download_min_rate`` bytes per second.',
      '',
      'Related options:',
      '',
      '* ``image_download_min_rate``',
    ],
  }),
  option({
    section: 'DEFAULT',
    name: 'debug',
    type: { kind: 'bool' },
    default: false,
    help: ['If set to true, the logging level will be set to DEBUG instead of the default INFO level.'],
  }),

  option({
    section: 'DEFAULT',
    name: 'rpc_response_timeout',
    type: { kind: 'int', min: 1 },
    default: 60,
    help: ['Seconds to wait for a response from a call.'],
  }),
  option({
    section: 'DEFAULT',
    name: 'max_concurrent_builds',
    type: { kind: 'int', min: 0 },
    default: 10,
    help: [
      'Limits the maximum number of instance builds to run concurrently by novalet. Compute service can attempt to build an infinite number of instances, if asked to do so. This limit is enforced to avoid building unlimited instance concurrently on a compute node. This value can be set per compute node.',
      '',
      'Possible Values:',
      '',
      '* 0 : treated as unlimited.',
      '* Any positive integer representing maximum concurrent builds.',
    ],
  }),
  option({
    section: 'DEFAULT',
    name: 'shutdown_timeout',
    type: { kind: 'int', min: 0 },
    default: 60,
    help: [
      'Total time to wait in seconds for an instance to perform a clean shutdown.',
      '',
      'It determines the overall period (in seconds) a VM is allowed to perform a clean shutdown. On stop, the ACPI power button is pressed and, if the guest has not powered itself off within this time, it is powered off.',
      '',
      'Possible values:',
      '',
      '* A positive integer or 0 (default value is 60).',
    ],
  }),
  option({
    section: 'DEFAULT',
    name: 'graceful_shutdown_timeout',
    type: { kind: 'int', min: 0 },
    default: 60,
    help: [
      'Specify a timeout after which a gracefully shutdown server will exit. Zero value means endless wait.',
      '',
      'On SIGTERM, ``novalet compute`` stops taking requests, waits this long for the requests under way to finish, and hands the rest back to the broker for redelivery; guests keep running.',
    ],
  }),
  option({
    section: 'DEFAULT',
    name: 'default_availability_zone',
    type: { kind: 'string' },
    default: 'nova',
    help: [
      'Default availability zone for compute services.',
      '',
      'The zone a compute host reports when ``[compute] availability_zone`` is unset.',
    ],
  }),

  // ---------------------------------------------------------------- [libvirt]
  option({
    section: 'libvirt',
    name: 'virt_type',
    type: {
      kind: 'choice',
      choices: [{ value: 'kvm' }, { value: 'lxc' }, { value: 'qemu' }, { value: 'parallels' }],
    },
    default: 'kvm',
    help: [
      'Describes the virtualization type (or so called domain type) libvirt should use.',
      '',
      'The choice of this type must match the underlying virtualization strategy you have chosen for this host.',
      '',
      "novalet runs instances only through libvirt's QEMU driver: it accepts ``kvm`` and ``qemu``, and refuses nova's other choices ``lxc`` and ``parallels`` at start-up.",
      '',
      'Related options:',
      '',
      '* ``connection_uri``: depends on this',
      '* ``cpu_mode``: depends on this',
      '* ``cpu_models``: depends on this',
      '* ``fallback_virt_type``: used instead when KVM is unusable on this host',
    ],
  }),
  option({
    section: 'libvirt',
    name: 'connection_uri',
    type: { kind: 'string' },
    default: '',
    help: [
      'Overrides the default libvirt URI of the chosen virtualization type.',
      '',
      "If set, novalet will use this URI to connect to libvirt, in the compute service and in every command that uses libvirt (``novalet run``, ``validate``, ``capabilities``, ``cpu-compare``, ``cpu-baseline``). If empty (the default), novalet embeds libvirt's QEMU driver in its own process: the compute service as ``qemu:///embed?root=$state_path/libvirt``, each command at a root of its own under ``$state_path/run/libvirt`` (libvirt lets one process hold an embedded root).",
      '',
      'Possible values:',
      '',
      '* An URI like ``qemu:///system`` to use the libvirtd of this host.',
      '',
      'Related options:',
      '',
      '* ``virt_type``: Influences what is used as default value here.',
      '* ``[DEFAULT] state_path``: the embedded driver keeps its state below it.',
    ],
  }),
  option({
    section: 'libvirt',
    name: 'cpu_mode',
    type: {
      kind: 'choice',
      choices: [
        { value: 'host-model', description: 'Clone the host CPU feature flags' },
        { value: 'host-passthrough', description: 'Use the host CPU model exactly' },
        { value: 'custom', description: 'Use the CPU model in ``[libvirt]cpu_models``' },
        {
          value: 'none',
          description:
            "Don't set a specific CPU model. For instances with ``[libvirt] virt_type`` as KVM/QEMU, the default CPU model from QEMU will be used, which provides a basic set of CPU features that are compatible with most hosts",
        },
      ],
    },
    default: null,
    help: [
      'Is used to set the CPU mode an instance should have.',
      '',
      'If ``virt_type="kvm|qemu"``, it will default to ``host-model``, otherwise it will default to ``none``.',
      '',
      'novalet checks the mode against libvirt\'s domain capabilities for the virt type instances run with: ``host-passthrough`` with ``virt_type = qemu`` stops start-up (TCG cannot pass the host CPU through); when instances fall back to TCG because KVM is unusable (``fallback_virt_type``), they get ``host-model`` instead, and novalet says so.',
      '',
      'Related options:',
      '',
      '* ``cpu_models``: This should be set ONLY when ``cpu_mode`` is set to ``custom``. Otherwise, it would result in an error and novalet will not start.',
    ],
  }),
  option({
    section: 'libvirt',
    name: 'cpu_models',
    type: { kind: 'list' },
    default: [],
    deprecatedNames: [{ name: 'cpu_model' }],
    help: [
      'An ordered list of CPU models the host supports.',
      '',
      'It is expected that the list is ordered so that the more common and less advanced CPU models are listed earlier. Here is an example: ``SandyBridge,IvyBridge,Haswell,Broadwell``, the latter CPU model\'s features is richer that the previous CPU model.',
      '',
      'novalet gives instances the first model of the list that libvirt\'s domain capabilities call usable for the virt type instances run with (names are matched case-insensitively); a name libvirt does not know, or a list none of which is usable, stops start-up with the models that are. Under the TCG fallback, a list none of which TCG can give means ``host-model``, said.',
      '',
      'Possible values:',
      '',
      '* The named CPU models listed in ``/usr/share/libvirt/cpu_map/*.xml``.',
      '',
      'Related options:',
      '',
      '* ``cpu_mode``: This should be set to ``custom`` ONLY when you want to configure (via ``cpu_models``) a specific named CPU model. Otherwise, it would result in an error and novalet will not start.',
      '* ``virt_type``: Only the virtualization types ``kvm`` and ``qemu`` use this.',
    ],
  }),
  option({
    section: 'libvirt',
    name: 'cpu_model_extra_flags',
    type: { kind: 'list', lowerCaseItems: true },
    default: [],
    help: [
      'This allows specifying granular CPU feature flags when configuring CPU models. For example, to explicitly specify the ``pcid`` (Process-Context ID, an Intel processor feature) flag to the "IvyBridge" virtual CPU model::',
      '',
      '    [libvirt]',
      '    cpu_mode = custom',
      '    cpu_models = IvyBridge',
      '    cpu_model_extra_flags = pcid',
      '',
      'A flag may be prefixed with ``+`` to enable it or ``-`` to disable it; a flag without a prefix is enabled. The flags are case insensitive. Specifying extra flags is valid in combination with all the three possible values for ``cpu_mode``: ``custom`` (this also requires an explicit ``cpu_models`` to be specified), ``host-model``, or ``host-passthrough``.',
      '',
      'The possible values for ``cpu_model_extra_flags`` depends on the CPU model in use. Refer to ``/usr/share/libvirt/cpu_map/*.xml`` for possible CPU feature flags for a given CPU model.',
      '',
      'Related options:',
      '',
      '* cpu_mode',
      '* cpu_models',
    ],
  }),
  option({
    section: 'libvirt',
    name: 'hw_machine_type',
    type: { kind: 'list' },
    default: null,
    help: [
      'For qemu or KVM guests, set this option to specify a default machine type per host architecture. You can find a list of supported machine types in your environment by checking the output of the :command:`virsh capabilities` command. The format of the value for this config option is ``host-arch=machine-type``. For example: ``x86_64=machinetype1,armv7l=machinetype2``.',
    ],
  }),
  option({
    section: 'libvirt',
    name: 'images_type',
    type: {
      kind: 'choice',
      choices: ['raw', 'flat', 'qcow2', 'lvm', 'rbd', 'ploop', 'default'].map((value) => ({ value })),
    },
    default: 'default',
    help: [
      'VM Images format.',
      '',
      'If default is specified, each instance disk is a qcow2 overlay on a cached base image, as nova does with ``use_cow_images = True``.',
    ],
  }),
  option({
    section: 'libvirt',
    name: 'fallback_virt_type',
    type: {
      kind: 'choice',
      choices: [
        { value: '', description: 'No fallback: a build that needs KVM fails with the diagnosis' },
        { value: 'qemu', description: "QEMU's TCG software emulation" },
      ],
    },
    default: 'qemu',
    novaletOwn: true,
    help: [
      'When KVM is unusable on this host, run instances with this virt type instead.',
      '',
      'novalet checks at start-up whether KVM really works here (``/dev/kvm``, the KVM module, a self-test guest). When ``virt_type = kvm`` and KVM is unusable, instances run under this virt type and the scheduler is told so. Empty disables the fallback: builds that need KVM then fail with the cause and the remedy.',
      '',
      'Related options:',
      '',
      '* ``virt_type``',
      '* ``kvm_selftest_guest_dir``, ``kvm_selftest_timeout``',
    ],
  }),
  option({
    section: 'libvirt',
    name: 'wait_soft_reboot_seconds',
    type: { kind: 'int', min: 0 },
    default: 120,
    help: [
      'Number of seconds to wait for instance to shut down after soft reboot request is made. We fall back to hard reboot if instance does not shutdown within this window.',
    ],
  }),
  option({
    section: 'libvirt',
    name: 'kvm_selftest_guest_dir',
    type: { kind: 'string' },
    default: '$state_path/test-guest',
    novaletOwn: true,
    help: [
      'Where the KVM self-test guest is: a folder made by ``deploy/build-test-guest.sh`` holding ``vmlinuz``, ``initramfs.cpio.gz`` and ``manifest.json``.',
      '',
      'Once per host boot (and QEMU version) novalet boots this guest under KVM; a guest that does not reach user space within ``kvm_selftest_timeout`` seconds means KVM does not really work here, whatever ``/dev/kvm`` answers, and instances fall back to ``fallback_virt_type``. When the folder is missing the self-test cannot run: KVM is then judged by the host probe alone, with a warning.',
      '',
      'Related options:',
      '',
      '* ``kvm_selftest_timeout``',
      '* ``fallback_virt_type``',
    ],
  }),
  option({
    section: 'libvirt',
    name: 'kvm_selftest_timeout',
    type: { kind: 'int', min: 1, max: 600 },
    default: 20,
    novaletOwn: true,
    help: [
      'Seconds the KVM self-test guest has to print its marker on the serial console.',
      '',
      'Under working KVM the guest reaches user space in about a second; under TCG in two. The limit is generous so that a loaded host is not mistaken for a broken one.',
      '',
      'Related options:',
      '',
      '* ``kvm_selftest_guest_dir``',
    ],
  }),

  // -------------------------------------------------------------- [scheduler]
  option({
    section: 'scheduler',
    name: 'max_attempts',
    type: { kind: 'int', min: 1 },
    default: 3,
    deprecatedNames: [{ name: 'scheduler_max_attempts', section: 'DEFAULT' }],
    help: [
      'This is the maximum number of attempts that will be made for a given instance build/move operation. It limits the number of alternate hosts returned by the scheduler. When that list of hosts is exhausted, a MaxRetriesExceeded exception is raised and the instance is set to an error state.',
      '',
      'Possible values:',
      '',
      '* A positive integer, where the integer corresponds to the max number of attempts that can be made when building or moving an instance.',
    ],
  }),

  // ------------------------------------------------------- [filter_scheduler]
  option({
    section: 'filter_scheduler',
    name: 'enabled_filters',
    type: { kind: 'list' },
    default: [
      'ComputeFilter',
      'ComputeCapabilitiesFilter',
      'ImagePropertiesFilter',
      'ServerGroupAntiAffinityFilter',
      'ServerGroupAffinityFilter',
    ],
    deprecatedNames: [{ name: 'scheduler_default_filters', section: 'DEFAULT' }],
    help: [
      'Filters that the scheduler will use.',
      '',
      'An ordered list of filter class names that will be used for filtering hosts. These filters will be applied in the order they are listed so place your most restrictive filters first to make the filtering process more efficient.',
      '',
      'Possible values:',
      '',
      '* A list of zero or more strings, where each string corresponds to the name of a filter to be used for selecting a host',
    ],
  }),


  option({
    section: 'api',
    name: 'listen',
    type: { kind: 'string' },
    default: '127.0.0.1',
    novaletOwn: true,
    help: [
      "IP address on which novalet's HTTP API will listen.",
      '',
      'The API serves the KVM verdict, the capabilities and the instances of this host.',
    ],
  }),
  option({
    section: 'api',
    name: 'port',
    type: { kind: 'port', min: 1, max: 65535 },
    default: 8789,
    novaletOwn: true,
    help: ["Port on which novalet's HTTP API will listen."],
  }),
  option({
    section: 'api',
    name: 'auth',
    type: {
      kind: 'choice',
      choices: [
        { value: 'token', description: 'every route but /healthz and /metrics wants ``Authorization: Bearer <token>``, the token in ``auth_token_file``' },
        { value: 'none', description: 'no authentication: any local user reads every guest\'s console (said loudly in the log)' },
      ],
    },
    default: 'token',
    novaletOwn: true,
    help: [
      "How novalet's HTTP API authenticates its callers.",
      '',
      'Related options:',
      '',
      '* ``auth_token_file``',
    ],
  }),
  option({
    section: 'api',
    name: 'auth_token_file',
    type: { kind: 'string' },
    default: '$state_path/api-token',
    novaletOwn: true,
    help: [
      'The file holding the bearer token of the HTTP API (one line).',
      '',
      'Made with a random token, mode 0600, at the first start when missing. Give it to the tools that read the API (``curl -H "Authorization: Bearer $(cat FILE)"``).',
      '',
      'Related options:',
      '',
      '* ``auth``',
    ],
  }),

  // ---------------------------------------------------------------- [compute]
  option({
    section: 'compute',
    name: 'availability_zone',
    type: { kind: 'string' },
    default: null,
    novaletOwn: true,
    help: [
      "This host's availability zone, sent in its capability reports.",
      '',
      "nova takes a host's zone from the host aggregates it is in; novalet hosts say their own, so that schedulers need no database. When unset, ``[DEFAULT] default_availability_zone``.",
    ],
  }),
  option({
    section: 'compute',
    name: 'aggregates',
    type: { kind: 'list' },
    default: [],
    novaletOwn: true,
    help: [
      'The host aggregates this host is in and their metadata, sent in its capability reports for the schedulers\' aggregate filters.',
      '',
      'Each item is ``name`` or ``name/key=value``; an aggregate named several times collects every key.',
      '',
      'Example: ``aggregates = ssd/disk=ssd, ssd/tier=gold, gpu``',
    ],
  }),
  option({
    section: 'compute',
    name: 'image_dir',
    type: { kind: 'string' },
    default: '$state_path/images',
    novaletOwn: true,
    help: [
      'The folder whose files a build may name as its image, kernel or ramdisk (``"image": {"name": "cirros.qcow2"}``).',
      '',
      'A name is a file name in this folder, never a path: a build cannot make the host read any other file.',
    ],
  }),

  option({
    section: 'compute',
    name: 'deleted_record_retention',
    type: { kind: 'int', min: 60 },
    default: 86400,
    novaletOwn: true,
    help: [
      'Seconds the record of a deleted instance is kept before it is purged.',
      '',
      "While it is kept, a delete (or build) message redelivered for that instance gets its terminal event again; afterwards a delete of it is answered ``action.error`` with INSTANCE_NOT_FOUND. nova keeps soft-deleted rows until ``nova-manage db archive_deleted_rows``; novalet purges by itself, so that a busy host's records do not grow without bound.",
    ],
  }),

  // -------------------------------------------------- [import_filtering_opts]
  option({
    section: 'import_filtering_opts',
    name: 'allowed_schemes',
    type: { kind: 'list' },
    default: ['http', 'https'],
    help: [
      'Specify the allowed url schemes for image downloads.',
      '',
      'A scheme not in this list is refused when the list is not empty (novalet fetches http and https only).',
      '',
      "novalet applies these rules, glance's, to every image, kernel and ramdisk URL a build names (and to every redirect it follows). Whatever they say, a URL whose host is, or resolves to, a loopback, link-local (the metadata address 169.254.169.254 included), unspecified or multicast address, or an address of this host, is refused unless ``allowed_hosts`` names that host.",
      '',
      'Related options:',
      '',
      '* ``disallowed_schemes``',
      '* ``allowed_hosts``',
      '* ``disallowed_hosts``',
      '* ``allowed_ports``',
      '* ``disallowed_ports``',
    ],
  }),
  option({
    section: 'import_filtering_opts',
    name: 'disallowed_schemes',
    type: { kind: 'list' },
    default: [],
    help: [
      'Specify the disallowed url schemes for image downloads.',
      '',
      'A scheme in this list is refused.',
      '',
      "novalet applies these rules, glance's, to every image, kernel and ramdisk URL a build names (and to every redirect it follows). Whatever they say, a URL whose host is, or resolves to, a loopback, link-local (the metadata address 169.254.169.254 included), unspecified or multicast address, or an address of this host, is refused unless ``allowed_hosts`` names that host.",
      '',
      'Related options:',
      '',
      '* ``allowed_schemes``',
      '* ``allowed_hosts``',
      '* ``disallowed_hosts``',
      '* ``allowed_ports``',
      '* ``disallowed_ports``',
    ],
  }),
  option({
    section: 'import_filtering_opts',
    name: 'allowed_hosts',
    type: { kind: 'list' },
    default: [],
    help: [
      'Specify the allowed target hosts for image downloads.',
      '',
      'When not empty, a host not in this list is refused. Each item is a host name or IP address as the URL writes it, without the port.',
      '',
      "novalet applies these rules, glance's, to every image, kernel and ramdisk URL a build names (and to every redirect it follows). Whatever they say, a URL whose host is, or resolves to, a loopback, link-local (the metadata address 169.254.169.254 included), unspecified or multicast address, or an address of this host, is refused unless ``allowed_hosts`` names that host.",
      '',
      'Related options:',
      '',
      '* ``allowed_schemes``',
      '* ``disallowed_schemes``',
      '* ``disallowed_hosts``',
      '* ``allowed_ports``',
      '* ``disallowed_ports``',
    ],
  }),
  option({
    section: 'import_filtering_opts',
    name: 'disallowed_hosts',
    type: { kind: 'list' },
    default: [],
    help: [
      'Specify the disallowed hosts for image downloads.',
      '',
      'A host in this list is refused, whatever the scheme or port.',
      '',
      "novalet applies these rules, glance's, to every image, kernel and ramdisk URL a build names (and to every redirect it follows). Whatever they say, a URL whose host is, or resolves to, a loopback, link-local (the metadata address 169.254.169.254 included), unspecified or multicast address, or an address of this host, is refused unless ``allowed_hosts`` names that host.",
      '',
      'Related options:',
      '',
      '* ``allowed_schemes``',
      '* ``disallowed_schemes``',
      '* ``allowed_hosts``',
      '* ``allowed_ports``',
      '* ``disallowed_ports``',
    ],
  }),
  option({
    section: 'import_filtering_opts',
    name: 'allowed_ports',
    type: { kind: 'list', portItems: true },
    default: [80, 443],
    help: [
      'Specify the allowed ports for image downloads.',
      '',
      'When not empty, a URL that names a port not in this list is refused; a URL without a port is not checked against the ports (as glance). Set it empty (``allowed_ports =``) to allow every port.',
      '',
      "novalet applies these rules, glance's, to every image, kernel and ramdisk URL a build names (and to every redirect it follows). Whatever they say, a URL whose host is, or resolves to, a loopback, link-local (the metadata address 169.254.169.254 included), unspecified or multicast address, or an address of this host, is refused unless ``allowed_hosts`` names that host.",
      '',
      'Related options:',
      '',
      '* ``allowed_schemes``',
      '* ``disallowed_schemes``',
      '* ``allowed_hosts``',
      '* ``disallowed_hosts``',
      '* ``disallowed_ports``',
    ],
  }),
  option({
    section: 'import_filtering_opts',
    name: 'disallowed_ports',
    type: { kind: 'list', portItems: true },
    default: [],
    help: [
      'Specify the disallowed ports for image downloads.',
      '',
      'A URL that names a port in this list is refused.',
      '',
      "novalet applies these rules, glance's, to every image, kernel and ramdisk URL a build names (and to every redirect it follows). Whatever they say, a URL whose host is, or resolves to, a loopback, link-local (the metadata address 169.254.169.254 included), unspecified or multicast address, or an address of this host, is refused unless ``allowed_hosts`` names that host.",
      '',
      'Related options:',
      '',
      '* ``allowed_schemes``',
      '* ``disallowed_schemes``',
      '* ``allowed_hosts``',
      '* ``disallowed_hosts``',
      '* ``allowed_ports``',
    ],
  }),

  // -------------------------------------------------- [oslo_messaging_rabbit]
  option({
    section: 'oslo_messaging_rabbit',
    name: 'heartbeat_timeout_threshold',
    type: { kind: 'int', min: 0 },
    default: 60,
    help: [
      "Number of seconds after which the Rabbit broker is considered down if heartbeat's keep-alive fails (0 disables heartbeat).",
    ],
  }),
  option({
    section: 'oslo_messaging_rabbit',
    name: 'rabbit_retry_interval',
    type: { kind: 'int', min: 1 },
    default: 1,
    help: ['How frequently to retry connecting with RabbitMQ.'],
  }),
  option({
    section: 'oslo_messaging_rabbit',
    name: 'rabbit_retry_backoff',
    type: { kind: 'int', min: 0 },
    default: 2,
    help: ['How long to backoff for between retries when connecting to RabbitMQ.'],
  }),
  option({
    section: 'oslo_messaging_rabbit',
    name: 'rabbit_interval_max',
    type: { kind: 'int', min: 1 },
    default: 30,
    help: ['Maximum interval of RabbitMQ connection retries.'],
  }),
  option({
    section: 'oslo_messaging_rabbit',
    name: 'rabbit_qos_prefetch_count',
    type: { kind: 'int', min: 0 },
    default: 0,
    help: [
      'Specifies the number of messages to prefetch. Setting to zero allows unlimited messages.',
      '',
      'When this is zero, novalet compute takes at most twice ``[DEFAULT] max_concurrent_builds`` unacknowledged requests at once, so that calls are not stuck behind builds and requests it cannot start yet stay in the broker.',
    ],
  }),
  option({
    section: 'oslo_messaging_rabbit',
    name: 'rabbit_quorum_queue',
    type: { kind: 'bool' },
    default: false,
    help: [
      'Use quorum queues in RabbitMQ (x-queue-type: quorum).',
      '',
      'The quorum queue is a modern queue type for RabbitMQ implementing a durable, replicated FIFO queue based on the Raft consensus algorithm. If set to false, classic durable queues are used. A queue\'s type cannot change once it exists: delete ``novalet.scheduler``, ``novalet.compute.<host>`` and ``novalet.dead`` after changing this.',
    ],
  }),
  option({
    section: 'oslo_messaging_rabbit',
    name: 'ssl',
    type: { kind: 'bool' },
    default: false,
    deprecatedNames: [{ name: 'rabbit_use_ssl' }],
    help: ['Connect over SSL.'],
  }),
  option({
    section: 'oslo_messaging_rabbit',
    name: 'ssl_ca_file',
    type: { kind: 'string' },
    default: '',
    deprecatedNames: [{ name: 'kombu_ssl_ca_certs' }],
    help: [
      'SSL certification authority file (valid only if SSL enabled).',
      '',
      "The broker's certificate must be signed by this CA and name the host of ``transport_url``. When unset it is checked against the system's CAs (oslo.messaging does not check it then): a broker with a certificate of a private CA needs this.",
    ],
  }),
  option({
    section: 'oslo_messaging_rabbit',
    name: 'ssl_cert_file',
    type: { kind: 'string' },
    default: '',
    deprecatedNames: [{ name: 'kombu_ssl_certfile' }],
    help: ['SSL cert file (valid only if SSL enabled).'],
  }),
  option({
    section: 'oslo_messaging_rabbit',
    name: 'ssl_key_file',
    type: { kind: 'string' },
    default: '',
    deprecatedNames: [{ name: 'kombu_ssl_keyfile' }],
    help: ['SSL key file (valid only if SSL enabled).'],
  }),
  option({
    section: 'oslo_messaging_rabbit',
    name: 'max_message_size',
    type: { kind: 'int', min: 1024, max: 134217728 },
    default: 1048576,
    novaletOwn: true,
    help: [
      'The largest message body, in bytes, novalet accepts from the broker.',
      '',
      'A larger one is moved to ``novalet.dead`` unparsed, with the reason.',
    ],
  }),
  option({
    section: 'oslo_messaging_rabbit',
    name: 'dead_letter_max_length',
    type: { kind: 'int', min: 1 },
    default: 10000,
    novaletOwn: true,
    help: [
      'The most messages ``novalet.dead`` keeps (its ``x-max-length``); past it the oldest are dropped.',
      '',
      "Every novalet process declares ``novalet.dead`` with this bound. Where the queue already exists with another bound (another host's setting, or a queue made before this option), the existing one is used as it is and a warning says so; to change it, delete ``novalet.dead`` or set a RabbitMQ policy with ``max-length``.",
    ],
  }),
] as const;

// Compile-time check: the table defines every field of NovaletConfig.
type AllKeys = { [S in SectionName]: `${S}.${Key<S>}` }[SectionName];
type DefinedKeys = (typeof TABLE)[number]['key'];
type MissingKeys = Exclude<AllKeys, DefinedKeys>;
const everyOptionDefined: [MissingKeys] extends [never] ? true : MissingKeys = true;
void everyOptionDefined;

export const OPTION_DEFINITIONS: readonly OptionDefinition[] = TABLE;

/** Sections in the order oslo-config-generator writes them: DEFAULT first, then by name. */
export const SECTION_ORDER: readonly SectionName[] = ['DEFAULT', 'api', 'compute', 'filter_scheduler', 'import_filtering_opts', 'libvirt', 'oslo_messaging_rabbit', 'scheduler'];
