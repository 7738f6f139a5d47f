import type { ErrorCode } from './error-codes.js';

export type { ErrorCode } from './error-codes.js';

/**
 * The base of every error novalet raises on purpose. Each carries a stable
 * code from the one catalogue (error-codes.ts: one meaning per code, for
 * scripts, tests and the faults that travel to other hosts) and reads as a
 * sentence that ends with what to do about it, so that the CLI can print
 * `message` alone — never a stack — for anything caused by bad input or by
 * the host.
 */
export class NovaletError extends Error {
  readonly code: ErrorCode;
  readonly remedy: string | undefined;

  constructor(code: ErrorCode, message: string, remedy?: string) {
    super(remedy ? `${message} ${remedy}` : message);
    this.name = new.target.name;
    this.code = code;
    this.remedy = remedy;
  }
}
