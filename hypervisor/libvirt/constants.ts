/** Flag and enum values from libvirt's public headers (libvirt-domain.h, libvirt-host.h), as novalet uses them. */

/** The C library's soname (here rather than in library.ts, which loads koffi: the call threads need only the name). */
export const LIBVIRT_SONAME = 'libvirt.so.0';

/** virDomainModificationImpact */
export const DomainAffect = {
  CURRENT: 0,
  LIVE: 1,
  CONFIG: 2,
} as const;

/** virDomainShutdownFlagValues / virDomainRebootFlagValues (the same bit for both) */
export const ACPI_POWER_BUTTON = 1;

/** virDomainUndefineFlagsValues */
export const DomainUndefine = {
  MANAGED_SAVE: 1,
  SNAPSHOTS_METADATA: 2,
  NVRAM: 4,
  KEEP_NVRAM: 8,
  CHECKPOINTS_METADATA: 16,
  TPM: 32,
  KEEP_TPM: 64,
} as const;

/** What undefine() removes unless told otherwise: every piece of metadata that would block it, and the NVRAM file. */
export const DEFAULT_UNDEFINE_FLAGS =
  DomainUndefine.MANAGED_SAVE | DomainUndefine.SNAPSHOTS_METADATA | DomainUndefine.NVRAM | DomainUndefine.CHECKPOINTS_METADATA;

/** virDomainXMLFlags */
export const DomainXml = {
  SECURE: 1,
  INACTIVE: 2,
  UPDATE_CPU: 4,
  MIGRATABLE: 8,
} as const;

/** virDomainMetadataType */
export const METADATA_TYPES = { description: 0, title: 1, element: 2 } as const;
export type MetadataType = keyof typeof METADATA_TYPES;

/** virDomainEventID */
export const DOMAIN_EVENT_ID_LIFECYCLE = 0;

/** virConnectCompareCPUFlags */
export const CompareCpu = {
  FAIL_INCOMPATIBLE: 1,
  VALIDATE_XML: 2,
} as const;

/** virConnectBaselineCPUFlags */
export const BaselineCpu = {
  EXPAND_FEATURES: 1,
  MIGRATABLE: 2,
} as const;

/** virConnectCloseReason */
export const CLOSE_REASONS = ['error', 'eof', 'keepalive', 'client'] as const;
export type CloseReason = (typeof CLOSE_REASONS)[number] | 'unknown';

/** Keepalive for remote connections, as virsh uses: a probe every 5 s, the connection dead after 6 unanswered. */
export const KEEPALIVE_INTERVAL_S = 5;
export const KEEPALIVE_COUNT = 6;
