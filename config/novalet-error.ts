/**
 * The base of every error novalet raises on purpose. Each carries a stable
 * code (for scripts and tests) and reads as a sentence that ends with what to
 * do about it, so that the CLI can print `message` alone — never a stack —
 * for anything caused by bad input or by the host.
 */
export class NovaletError extends Error {
  readonly code: string;
  readonly remedy: string | undefined;

  constructor(code: string, message: string, remedy?: string) {
    super(remedy ? `${message} ${remedy}` : message);
    this.name = new.target.name;
    this.code = code;
    this.remedy = remedy;
  }
}
