/**
 * The one error type bad configuration produces. Its message is a single
 * line that names where the problem is, what is wrong and what is allowed:
 *
 *   /etc/nova/nova.conf:12: [libvirt] virt_type = 'kvmm' is not allowed; choose one of: kvm, lxc, qemu, parallels.
 *
 * Values are quoted and escaped; values of secret options are masked.
 */

import { NovaletError, type ErrorCode } from './novalet-error.js';
import { maskCredentialsInText, maskSecretValue } from './mask-credentials.js';
import { printable, quoteForMessage } from './quote-for-message.js';

/** The configuration's own codes (their meanings are in error-codes.ts). */
export type ConfigErrorCode = Extract<ErrorCode, `CONFIG_${string}`>;

export interface ConfigErrorDetails {
  code: ConfigErrorCode;
  /** The file the problem is in; omitted when the offending value is an option's default. */
  file?: string;
  line?: number;
  section?: string;
  /** The option as written in the file (a deprecated name if that was used). */
  option?: string;
  /** The value as written; masked before it is stored or shown when `secret`. */
  value?: string;
  secret?: boolean;
  /**
   * What is wrong. With `predicate`, it continues the sentence
   * "[section] option = 'value' …" (e.g. "is not allowed; …"); otherwise it
   * follows a colon.
   */
  problem: string;
  predicate?: boolean;
  /** What to do about it, appended after the problem. */
  remedy?: string;
}

export class ConfigError extends NovaletError {
  readonly file: string | null;
  readonly line: number | null;
  readonly section: string | null;
  readonly option: string | null;
  /** The offending value as shown (already masked for secrets), or null. */
  readonly value: string | null;

  constructor(details: ConfigErrorDetails) {
    const value =
      details.value === undefined ? undefined : details.secret ? maskSecretValue(details.value) : details.value;
    super(details.code, formatMessage({ ...details, value }), details.remedy);
    this.file = details.file ?? null;
    this.line = details.line ?? null;
    this.section = details.section ?? null;
    this.option = details.option ?? null;
    this.value = value ?? null;
  }
}

function formatMessage(d: ConfigErrorDetails): string {
  const where =
    d.file === undefined ? 'default' : d.line === undefined ? printable(d.file) : `${printable(d.file)}:${d.line}`;
  let subject = '';
  if (d.section !== undefined) {
    subject = `[${printable(d.section)}]`;
    if (d.option !== undefined) subject += ` ${printable(d.option)}`;
    if (d.value !== undefined) subject += ` = ${quoteForMessage(d.value)}`;
  }
  const joiner = subject === '' ? '' : d.predicate ? ' ' : ': ';
  // Problems quote user text already; this keeps the one-line promise even
  // for text from elsewhere (an operating system error naming a path).
  // A URL password anywhere in the message (a value joined with the line below, say) is masked too.
  return maskCredentialsInText(`${where}: ${subject}${joiner}${d.problem}`.replace(/[\r\n\u0085\u2028\u2029]/g, (ch) => printable(ch)));
}
