/**
 * Every code a NovaletError can carry, each with its one meaning. Faults
 * travel to other hosts and to operators (instance faults, `create.error`
 * events, reschedules), so a code never means two things: a new kind of
 * failure gets a new code here. KVM reasons have codes of their own
 * (messaging/contracts/kvm-verdict.ts); instance faults may also carry
 * GUEST_CRASHED and INTERNAL, listed here too.
 */
export const ERROR_CODES = {
  // The command line and configuration
  CLI_USAGE: 'The command line is not one the command takes.',
  COMMAND_INTERRUPTED: 'The command was ended by SIGINT, SIGTERM or SIGHUP; what it had started is removed.',
  CONFIG_PARSE: 'A configuration file is not nova.conf syntax, or not UTF-8 text.',
  CONFIG_INVALID_VALUE: "A value does not convert to its option's type or is not among its choices.",
  CONFIG_FILE_MISSING: 'A file named with --config-file does not exist.',
  CONFIG_FILE_UNREADABLE: 'A configuration file exists but cannot be read.',
  CONFIG_FILE_NOT_REGULAR: 'A path given or found as a configuration file is not a regular file (a directory, FIFO, device or socket).',
  CONFIG_FILE_TOO_LARGE: 'A configuration file is larger than novalet reads (1 MiB).',
  CONFIG_DIR_MISSING: 'A directory named with --config-dir does not exist or cannot be listed.',
  CONFIG_SUBSTITUTION: 'A $reference in a value cannot be resolved, refers to itself, or nests too deeply.',
  CONFIG_SUBSTITUTION_TOO_LARGE: 'A value expands to more than 64 KiB once its $references are substituted, or all values together to more than 1 MiB.',
  CONFIG_STATE_PATH: 'A folder novalet writes in (state_path, instances_path) is a file, under /proc or /sys, or cannot be created or written.',
  CONFIG_CPU_RULE: "The CPU options break nova's _check_cpu_compatibility rules or the flag syntax.",
  CONFIG_UNSUPPORTED: 'A setting nova accepts that novalet cannot honour (virt_type lxc or parallels).',

  // The host and its tools
  LIBC_UNAVAILABLE: 'The ioctl(2) of libc cannot be called through koffi (no glibc, or koffi without its native module).',
  KVM_IOCTL_RECORDING_INVALID: "A recording of another host's /dev/kvm answers (kvm-ioctl.json) is malformed.",
  NO_EMULATOR: 'No QEMU system emulator for the architecture a guest needs is installed.',
  KVM_UNAVAILABLE: 'An instance needs KVM and KVM is not usable here (the classic "could not find capabilities for domaintype=kvm").',

  // Guest CPUs
  CPU_MODE_UNSUPPORTED: 'The configured cpu_mode is not supported by the emulator under the virt type instances run with.',
  CPU_MODE_NEEDS_KVM: 'The configuration asks for cpu_mode = host-passthrough with virt_type = qemu, and TCG cannot pass the host CPU through.',
  CPU_MODEL_UNKNOWN: "A model in cpu_models is not one libvirt knows: not in its cpu_map, or (where there is no cpu_map to check) not among the models it lists for the emulator.",
  CPU_MODEL_UNUSABLE: 'None of cpu_models is usable under the virt type instances run with.',
  CPU_FLAG_UNKNOWN: "A flag in cpu_model_extra_flags is not in libvirt's cpu_map.",
  CPU_FLAG_UNAVAILABLE: 'A flag cpu_model_extra_flags requires cannot be given under the virt type instances run with.',
  CPU_FILE_UNREADABLE: 'A CPU file given to cpu-compare or cpu-baseline cannot be read, or is not a regular file (a directory, a device, a pipe).',
  CPU_FILE_TOO_LARGE: 'A CPU file given to cpu-compare or cpu-baseline is larger than novalet reads.',
  CPU_TOO_MANY: 'More CPU definitions given to cpu-compare or cpu-baseline than novalet takes at once.',
  CPU_XML_DOCTYPE: 'A CPU file has a DOCTYPE or entity declaration, which novalet does not read.',
  CPU_XML_INVALID: 'A CPU file is not well-formed XML, or refers to an entity XML does not define.',
  CPU_XML_NO_CPU: 'A CPU file holds no CPU definition.',
  CPU_XML_NO_MODEL: 'A <cpu> (or cpu_info) has no model.',
  CPU_XML_NO_ARCH: 'A <cpu> (or cpu_info) has no architecture.',
  CPU_XML_BAD_FEATURE: 'A <feature> has no name.',
  CPU_XML_UNKNOWN_FEATURE: "A CPU feature is not in libvirt's cpu_map.",
  CPU_XML_UNKNOWN_MODEL: "A CPU model in a CPU file is not in libvirt's cpu_map.",
  CPU_JSON_INVALID: 'A CPU file is not valid JSON, or its cpu_info string is not.',
  CPU_JSON_NO_CPU: "JSON that is neither nova's cpu_info nor a capability report holding one.",
  CPU_JSON_BAD_FEATURES: "The features of a cpu_info are not a list of feature names.",
  CPU_ARCH_MIXED: 'CPUs of different architectures given to be compared or baselined together.',
  CPU_VENDORS_DIFFER: 'CPUs of different vendors given to be baselined together, which libvirt refuses.',

  // Instances and images
  INSTANCE_SPEC_INVALID: 'An instance asks for something that cannot be (a field out of its range, nothing to boot, a URL without checksum).',
  INSTANCE_FILE_MISSING: 'A kernel or ramdisk the instance names cannot be read, or is not a regular file.',
  INSTANCE_EXISTS: 'An instance with this UUID already exists on this host.',
  INSTANCE_NOT_FOUND: 'No instance with this UUID exists on this host.',
  INSTANCE_NOT_RUNNING: 'The operation needs a running instance, and this one is not running.',
  INSTANCE_RECORD_CORRUPT: "An instance's record on this host cannot be read (not valid JSON, not a record, or unreadable); it was moved aside and the service is degraded.",
  IMAGE_NOT_FOUND: 'An image file cannot be read.',
  IMAGE_DOWNLOAD_FAILED: 'An image URL could not be downloaded whole: a DNS or connection error, an HTTP status other than 200, or fewer or more bytes than its Content-Length.',
  IMAGE_DOWNLOAD_ABORTED: "An image download or copy was cancelled by its caller's abort signal (a signal, a deadline of the caller's).",
  IMAGE_DOWNLOAD_STALLED: 'An image download or copy received no byte for image_download_idle_timeout seconds.',
  IMAGE_DOWNLOAD_TIMEOUT: 'An image download or copy did not finish within image_download_timeout seconds.',
  IMAGE_REDIRECT_REFUSED: 'An image URL is not http(s), or redirects to something not http(s), or more than 5 times.',
  IMAGE_URL_REFUSED: "An image URL (or a redirect) is refused by [import_filtering_opts], or its host is or resolves to a loopback, link-local, unspecified, multicast or this host's own address that allowed_hosts does not name.",
  IMAGE_DOWNLOAD_TOO_SLOW: 'An image download delivered less than image_download_min_rate bytes per second over image_download_min_rate_window seconds.',
  IMAGE_TOO_LARGE: 'An image is larger than image_download_max_size_mb.',
  IMAGE_NO_SPACE: 'An image does not fit in the free space of the image cache beyond reserved_host_disk_mb.',
  IMAGE_CHECKSUM_MISMATCH: "An image's SHA-256 is not the one it was given with.",
  IMAGE_FORMAT_UNSUPPORTED: 'An image is in a format novalet does not boot (only qcow2 and raw).',
  IMAGE_HAS_BACKING_FILE: 'An image points at a backing file; images must stand alone.',
  QEMU_IMG_FAILED: 'qemu-img could not read an image or create an overlay.',
  GUEST_CRASHED: "An instance's guest crashed or its QEMU died (an instance fault, not a raised error).",
  INTERNAL: 'A failure that is not one of these: a bug (an instance fault, not a raised error).',

  // libvirt
  LIBVIRT_ERROR: 'libvirt refused or failed a call; its own code and words are in the message.',
  LIBVIRT_CALL_FAILED: 'A libvirt call failed without libvirt saying why.',
  LIBVIRT_CALL_THREAD_FAILED: "A libvirt call thread could not start or died.",
  LIBVIRT_EVENT_LOOP_FAILED: "libvirt's event loop could not be registered or run.",
  LIBVIRT_CONNECTION_CLOSED: 'A libvirt connection was used after it was closed.',
  LIBVIRT_DOMAIN_FREED: 'A libvirt domain handle was used after it was freed.',
  LIBVIRT_INVALID_DOMAIN: 'libvirt answered for a domain with something that is not one (no UUID or name).',
  LIBVIRT_FORK_HAZARD: "libvirt's embedded driver cannot fork QEMU from this process as it was started.",
  LIBVIRTD_UNREACHABLE: 'The libvirtd that connection_uri names does not answer.',
  CAPABILITIES_XML_INVALID: "libvirt's capabilities or domain capabilities XML lacks what novalet reads from it.",
  EMBEDDED_ROOT_NOT_ABSOLUTE: 'An embedded libvirt root is not an absolute path.',
  EMBEDDED_ROOT_UNWRITABLE: 'An embedded libvirt root or its qemu.conf cannot be created or written.',
  EMBEDDED_ROOT_BUSY: 'Another process holds the embedded libvirt root.',
  EMBEDDED_ROOT_CONFLICT: 'This process already embeds libvirt at another root (libvirt allows one per process).',
  EMBEDDED_ROOT_LOCK_UNREADABLE: "An embedded root's lock or claim file cannot be read.",
  EMBEDDED_ROOT_POOL_EXHAUSTED: 'Every embedded root of the pool is held by another process.',
  EMBEDDED_DRIVER_DOWN: "libvirt's embedded driver failed to start earlier in this process and does not start again.",

  // The compute service
  API_LISTEN_FAILED: "The HTTP API cannot listen on [api] listen and [api] port: the port is taken, the address is not this host's, or the port needs a privilege.",
  INSUFFICIENT_RESOURCES: "A build does not fit in what this host has left (vCPUs, memory or disk, with the allocation ratios), as nova's claims judge it.",
  IMAGE_NOT_IN_IMAGE_DIR: 'A build names an image, kernel or ramdisk that is not a regular file in [compute] image_dir.',
  HOST_DISABLED: 'This host cannot run instances at all (KVM unusable and no fallback) and refuses builds.',
  BUILD_INTERRUPTED: 'A build was under way when the compute service stopped, and could not be finished after its restart.',
  DOMAIN_LOST: "An instance's record says it exists but the hypervisor has no domain for it (found at the service's start-up).",
  DISK_FULL: 'A file novalet had to write (an instance record, an outbox entry, an image, an overlay) does not fit: the file system holding it is full.',
  INSTANCE_DELETED_DURING_BUILD: "A build ended because its instance was deleted while it was under way (nova's 'Instance was deleted during build').",
  INSTANCE_BUSY: 'Another operation of the instance is under way (a build) and this one cannot wait for it.',
  // The scheduler
  EXTRA_SPEC_NOT_COMPARABLE: "A flavor's extra spec cannot be evaluated against a host's value where nova raises (a numeric operator on a value that is not a number, a bare <or>): the host does not pass the filter.",
  API_AUTH_TOKEN_UNREADABLE: 'The HTTP API token file ([api] auth_token_file) cannot be read or made, or holds no token.',
  OUTBOX_WRITE_FAILED: 'An event or message could not be kept on disk for publishing (the outbox folder cannot be written).',

  // The message broker (messaging/)
  TRANSPORT_URL_INVALID: 'The [DEFAULT] transport_url is not a RabbitMQ URL novalet can use: another scheme, a bad port, an empty host or entry.',
  BROKER_TLS_FILE_UNREADABLE: 'A file [oslo_messaging_rabbit] ssl_ca_file, ssl_cert_file or ssl_key_file names cannot be read, or is not a regular file.',
  BROKER_PUBLISH_FAILED: 'A message was not confirmed by the broker: nacked, refused (no such exchange), not confirmed within rpc_response_timeout, or the connection was stopped first.',
  BROKER_CONSUME_FAILED: 'The broker refused to let novalet consume from a queue (no such queue, or access refused).',
  BROKER_STOPPED: 'The broker connection was used after it was stopped, or stopped before the operation finished.',
  MESSAGE_UNROUTABLE: 'A message published as mandatory came back from the broker: no queue is bound to its exchange with its routing key.',
  RPC_TIMEOUT: 'No reply to an RPC call came within its timeout (rpc_response_timeout unless the caller gave one).',
  RPC_REPLY_TOO_LARGE: 'The reply to an RPC call is larger than [oslo_messaging_rabbit] max_message_size.',
  RPC_REPLY_INVALID: 'The reply to an RPC call is not one the wire contract describes: not an envelope of kind reply, or its body or result of another shape.',
  AMQP_NAME_INVALID: "A host name or instance UUID cannot be part of a queue name or routing key: empty, too long, or holding '*', '#', whitespace or control characters.",
} as const satisfies Record<string, string>;

export type ErrorCode = keyof typeof ERROR_CODES;
