/**
 * The typed, validated configuration novalet runs with. Produced by
 * `loadConfig` (config/load-config.ts); every value is already converted to
 * its type, defaults applied and `$var` substitution done.
 */

/** Where an effective value came from: a file and line, or the option's default. */
export type ValueSource = { file: string; line: number } | 'default';

export interface DefaultSection {
  host: string;
  state_path: string;
  instances_path: string;
  transport_url: string | null;
  report_interval: number;
  service_down_time: number;
  cpu_allocation_ratio: number | null;
  ram_allocation_ratio: number | null;
  disk_allocation_ratio: number | null;
  initial_cpu_allocation_ratio: number;
  initial_ram_allocation_ratio: number;
  initial_disk_allocation_ratio: number;
  reserved_host_memory_mb: number;
  reserved_host_disk_mb: number;
  /** novalet's own: seconds an image download may go without a byte. */
  image_download_idle_timeout: number;
  /** novalet's own: seconds an image download may take in all. */
  image_download_timeout: number;
  /** novalet's own: the largest image, in MB, the image cache takes in. */
  image_download_max_size_mb: number;
  /** novalet's own: bytes per second a download must average over the window (0: not checked). */
  image_download_min_rate: number;
  /** novalet's own: seconds over which image_download_min_rate is averaged. */
  image_download_min_rate_window: number;
  debug: boolean;
  /** oslo.messaging's: seconds a call waits for its reply. */
  rpc_response_timeout: number;
  /** nova's: builds run at once (0: no limit). */
  max_concurrent_builds: number;
  /** nova's: seconds a guest has to power itself off on stop. */
  shutdown_timeout: number;
  /** oslo.service's: seconds SIGTERM waits for in-flight requests before handing them back. */
  graceful_shutdown_timeout: number;
  /** nova's: the zone of hosts that name none. */
  default_availability_zone: string;
}

export type VirtType = 'kvm' | 'lxc' | 'qemu' | 'parallels';
export type CpuMode = 'host-model' | 'host-passthrough' | 'custom' | 'none';

export interface LibvirtSection {
  virt_type: VirtType;
  connection_uri: string;
  cpu_mode: CpuMode | null;
  cpu_models: string[];
  cpu_model_extra_flags: string[];
  hw_machine_type: string[] | null;
  images_type: 'raw' | 'flat' | 'qcow2' | 'lvm' | 'rbd' | 'ploop' | 'default';
  /** novalet's own: what to run with when KVM is unusable; '' disables the fallback. */
  fallback_virt_type: '' | 'qemu';
  /** novalet's own: the KVM self-test guest's folder. */
  kvm_selftest_guest_dir: string;
  /** novalet's own: seconds the self-test guest has to reach user space. */
  kvm_selftest_timeout: number;
  /** nova's: seconds a SOFT reboot waits for the guest to shut down before rebooting it hard. */
  wait_soft_reboot_seconds: number;
}

export interface SchedulerSection {
  max_attempts: number;
}

export interface FilterSchedulerSection {
  enabled_filters: string[];
}

/** novalet's own options of the compute service. */
export interface ComputeSection {
  /** This host's availability zone; unset: [DEFAULT] default_availability_zone. */
  availability_zone: string | null;
  /** Aggregates this host is in, as `name` or `name/key=value` items. */
  aggregates: string[];
  /** The folder whose files builds may name as images (`"image": {"name": …}`). */
  image_dir: string;
  /** Seconds a deleted instance's record is kept before it is purged. */
  deleted_record_retention: number;
}

/** glance's `[import_filtering_opts]`: which image URLs may be fetched. */
export interface ImportFilteringSection {
  allowed_schemes: string[];
  disallowed_schemes: string[];
  allowed_hosts: string[];
  disallowed_hosts: string[];
  allowed_ports: number[];
  disallowed_ports: number[];
}

/** oslo.messaging's RabbitMQ driver options that novalet implements. */
export interface OsloMessagingRabbitSection {
  heartbeat_timeout_threshold: number;
  rabbit_retry_interval: number;
  rabbit_retry_backoff: number;
  rabbit_interval_max: number;
  rabbit_qos_prefetch_count: number;
  rabbit_quorum_queue: boolean;
  ssl: boolean;
  ssl_ca_file: string;
  ssl_cert_file: string;
  ssl_key_file: string;
  /** novalet's own: the largest message body accepted, in bytes. */
  max_message_size: number;
  /** novalet's own: novalet.dead's x-max-length. */
  dead_letter_max_length: number;
}

export interface ApiSection {
  listen: string;
  port: number;
  /** novalet's own: 'token' (a bearer token from auth_token_file) or 'none'. */
  auth: 'token' | 'none';
  /** novalet's own: the file holding the API's bearer token. */
  auth_token_file: string;
}

export interface NovaletConfig {
  DEFAULT: DefaultSection;
  libvirt: LibvirtSection;
  scheduler: SchedulerSection;
  filter_scheduler: FilterSchedulerSection;
  api: ApiSection;
  compute: ComputeSection;
  import_filtering_opts: ImportFilteringSection;
  oslo_messaging_rabbit: OsloMessagingRabbitSection;
}

export type SectionName = keyof NovaletConfig;

/** An option in the files that novalet does not implement (named in a debug line, never an error). */
export interface IgnoredOption {
  file: string;
  line: number;
  section: string;
  option: string;
}

/** An assignment that used a deprecated name (worth a warning). */
export interface DeprecatedOptionUse {
  file: string;
  line: number;
  /** The section the deprecated name was written in. */
  section: string;
  /** The deprecated name as written, e.g. `cpu_model`. */
  usedName: string;
  /** The option's current name, e.g. `cpu_models`. */
  name: string;
  /** The option's current section (differs from `section` for, e.g., [DEFAULT] scheduler_max_attempts). */
  newSection: SectionName;
  /** Whether this assignment supplied the effective value (false when a later one, or the new name, won). */
  effective: boolean;
}

/** How an option's effective value was written in a file. */
export interface Setting {
  file: string;
  line: number;
  /** The section as written (normalised). */
  section: string;
  /** The option as written: a deprecated name if that was used. */
  option: string;
  /** The value as written (after the INI reader, before substitution). */
  raw: string;
  /** The value after `$` substitution, before conversion to its type. */
  text: string;
  /**
   * The option is secret, or its value took text from a secret one through
   * `$name` (host = $transport_url): `text` is never to be shown unmasked.
   */
  secret: boolean;
}

export interface LoadedConfig {
  /** Typed values. */
  values: NovaletConfig;
  /** Source of each effective value: sources[section][option]. */
  sources: { [S in SectionName]: Record<string, ValueSource> };
  /** For options set in a file: how they were written there, settings[section][option]. */
  settings: { [S in SectionName]: Record<string, Setting> };
  /**
   * secret[section][option]: the option is secret, or its effective value
   * (its default included) took text from a secret one through `$name`.
   * Such values are shown masked, and error messages never quote them.
   */
  secret: { [S in SectionName]: Record<string, boolean> };
  /** The files read, in the order read (later wins). */
  files: string[];
  /** Options and sections novalet does not know, in the order read. */
  ignored: IgnoredOption[];
  /** Every assignment that used a deprecated name, in the order read. */
  deprecated: DeprecatedOptionUse[];
}
