import { NovaletError, type ErrorCode } from '../../config/novalet-error.js';
import { libvirtErrorDomainName, libvirtErrorName } from './error-names.js';

/**
 * libvirt's virError, copied on the thread that made the failing call (see
 * call-worker-source.ts). `null` fields are the ones libvirt left empty.
 */
export interface LibvirtErrorRecord {
  code: number;
  domain: number;
  level: number;
  message: string | null;
  str1: string | null;
  str2: string | null;
  str3: string | null;
  int1: number;
  int2: number;
}

/** What to do about an error, by its code name, where one answer fits most cases. */
const REMEDIES: Record<string, string> = {
  VIR_ERR_NO_DOMAIN:
    'Check the name or UUID: the domain is not defined on this connection (it may have been undefined meanwhile).',
  VIR_ERR_OPERATION_INVALID:
    "The domain's current state does not allow this operation; read its state and retry when it fits (start a shut-off domain, stop a running one).",
  VIR_ERR_CONFIG_UNSUPPORTED:
    "The domain asks for something this host's QEMU or libvirt cannot provide; compare the domain XML with the host's capabilities (without working KVM, use virt type qemu).",
  VIR_ERR_XML_ERROR: 'Fix the XML document: it is not well-formed or lacks a required element.',
  VIR_ERR_XML_DETAIL: 'Fix the XML document at the place the message points to.',
  VIR_ERR_XML_INVALID_SCHEMA: "Fix the XML document so that it validates against libvirt's schema.",
  VIR_ERR_DOM_EXIST: 'Choose another name or UUID, or undefine the existing domain first.',
  VIR_ERR_NO_CONNECT:
    'Check the connection URI ([libvirt] connection_uri) and that libvirtd is running, or use the embedded driver (qemu:///embed?root=DIR).',
  VIR_ERR_AUTH_FAILED: 'Run novalet as root, or as a user allowed to manage libvirt.',
  VIR_ERR_ACCESS_DENIED: 'Run novalet as root, or as a user allowed to manage libvirt.',
  VIR_ERR_OPERATION_DENIED: 'Open a read-write connection: this one is read-only.',
  VIR_ERR_NO_SUPPORT: 'This libvirt driver does not offer the operation; use a connection URI whose driver does.',
  VIR_ERR_OPERATION_UNSUPPORTED: 'This libvirt driver does not offer the operation; use a connection URI whose driver does.',
  VIR_ERR_ARGUMENT_UNSUPPORTED: 'Leave out the flag or argument this libvirt version does not support.',
  VIR_ERR_OPERATION_TIMEOUT: 'The hypervisor did not answer in time; check that QEMU is not stuck and retry.',
  VIR_ERR_CPU_INCOMPATIBLE:
    'Choose a CPU model that the domain capabilities list as usable for this virt type, or leave out the features the hypervisor lacks.',
  VIR_ERR_SYSTEM_ERROR: 'Check that the file, device or directory named exists and that novalet (running as root) may use it.',
  VIR_ERR_RESOURCE_BUSY: 'Another job holds the resource; retry when it has finished.',
};

/**
 * For the codes libvirt uses for almost anything: where more is said. A
 * domain's log exists only for a call on a domain (QEMU writes it when it
 * starts); for the rest, libvirt's own log.
 */
const DOMAIN_LOG_REMEDIES: Record<string, string> = {
  VIR_ERR_INTERNAL_ERROR:
    "If QEMU failed to start, its own words are in the domain's log (log/qemu/NAME.log under the embedded root, /var/log/libvirt/qemu/NAME.log with libvirtd).",
  VIR_ERR_OPERATION_FAILED:
    "If QEMU refused the operation, its own words are in the domain's log (log/qemu/NAME.log under the embedded root, /var/log/libvirt/qemu/NAME.log with libvirtd).",
};

function libvirtLogRemedy(): string {
  const file = /^\d+:file:(.+)$/.exec(process.env.LIBVIRT_LOG_OUTPUTS ?? '')?.[1];
  return file ? `libvirt's own log may say more: ${file}.` : "libvirt's own log may say more: run with LIBVIRT_LOG_OUTPUTS=3:stderr to see it.";
}

function remedyFor(codeName: string, aboutDomain: boolean): string | undefined {
  if (codeName in DOMAIN_LOG_REMEDIES) return aboutDomain ? DOMAIN_LOG_REMEDIES[codeName] : libvirtLogRemedy();
  return REMEDIES[codeName];
}

/** libvirt's message on one line: the caret lines that point into XML excerpts carry nothing once flattened. */
function oneLine(text: string): string {
  return text
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !/^[-\s]*\^$/.test(line))
    .join(' ');
}

function sentence(text: string): string {
  return /[.!?]$/.test(text) ? text : `${text}.`;
}

export interface LibvirtErrorOptions {
  /** A novalet code more precise than LIBVIRT_ERROR (EMBEDDED_ROOT_BUSY, …). */
  code?: ErrorCode;
  /** Replaces the whole first sentence. */
  message?: string;
  /** Replaces the remedy looked up by libvirt's code. */
  remedy?: string;
  /** The call was on a domain (or started one), so the domain may have a log to read. */
  aboutDomain?: boolean;
}

/** Whether a call (by its C prototype) is on a domain or starts one: only then can a domain's log tell more. */
export function callIsAboutDomain(proto: string): boolean {
  return /\(uintptr_t domain\b/.test(proto) || /\bvirDomainCreateXML\(/.test(proto);
}

/**
 * An error libvirt reported, with its numbers, their names and its message.
 * `message` reads: "libvirt could not <operation>: <libvirt's words>
 * (<code name>). <remedy>".
 */
export class LibvirtError extends NovaletError {
  /** libvirt's virErrorNumber, e.g. 42. */
  readonly libvirtCode: number;
  /** Its name, e.g. VIR_ERR_NO_DOMAIN. */
  readonly libvirtCodeName: string;
  /** libvirt's virErrorDomain (which part of libvirt raised it), e.g. 10. */
  readonly libvirtDomain: number;
  /** Its name, e.g. VIR_FROM_QEMU. */
  readonly libvirtDomainName: string;
  /** libvirt's own message, unchanged (it may span lines). */
  readonly libvirtMessage: string;
  /** What novalet asked libvirt to do, e.g. "define the domain". */
  readonly operation: string;
  readonly record: LibvirtErrorRecord | null;

  constructor(operation: string, record: LibvirtErrorRecord | null, options: LibvirtErrorOptions = {}) {
    const libvirtCode = record?.code ?? 1;
    const libvirtDomain = record?.domain ?? 0;
    const libvirtMessage = record?.message ?? 'libvirt reported a failure but no error (the cause is unknown)';
    const codeName = libvirtErrorName(libvirtCode);
    const first = options.message ?? sentence(`libvirt could not ${operation}: ${oneLine(libvirtMessage)} (${codeName})`);
    super(options.code ?? 'LIBVIRT_ERROR', first, options.remedy ?? remedyFor(codeName, options.aboutDomain ?? false));
    this.libvirtCode = libvirtCode;
    this.libvirtCodeName = codeName;
    this.libvirtDomain = libvirtDomain;
    this.libvirtDomainName = libvirtErrorDomainName(libvirtDomain);
    this.libvirtMessage = libvirtMessage;
    this.operation = operation;
    this.record = record;
  }
}

export function isLibvirtError(error: unknown, codeName?: string): error is LibvirtError {
  return error instanceof LibvirtError && (codeName === undefined || error.libvirtCodeName === codeName);
}
