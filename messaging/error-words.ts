import { maskCredentialsInText } from '../config/mask-credentials.js';

/**
 * An error from the connection to the broker as words for one log line.
 * OpenSSL's own text carries its source file and a newline ("…:SSL alert
 * number 116\n"); Node gives its reason apart, which reads better. A
 * certificate Node would not accept is named so, with the option to check.
 */

/** Node's codes for a peer certificate it did not accept (tls.TLSSocket's verifyError and checkServerIdentity). */
const UNTRUSTED_CERTIFICATE = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

export function errorWords(error: unknown): string {
  if (!(error instanceof Error)) return oneLine(String(error));
  const { code, reason } = error as Error & { code?: unknown; reason?: unknown };
  if (typeof code === 'string' && code.startsWith('ERR_SSL_') && typeof reason === 'string') return oneLine(`the TLS handshake failed: ${reason} (${code})`);
  if (typeof code === 'string' && UNTRUSTED_CERTIFICATE.has(code)) {
    return oneLine(`the broker's TLS certificate is not trusted: ${error.message} (${code}); [oslo_messaging_rabbit] ssl_ca_file must name the CA that signed it`);
  }
  return oneLine(error.message);
}

function oneLine(text: string): string {
  return text.replace(/\s+/g, ' ').trim();
}

/**
 * Error text for a log line of the broker layer: URL passwords masked and
 * every configured password (of 3 characters or more, shorter ones would
 * mangle the text) replaced, should a library ever quote one.
 */
export function credentialScrubber(passwords: readonly string[]): (error: unknown) => string {
  const forms = [...new Set(passwords.filter((p) => p.length >= 3).flatMap((p) => [p, encodeURIComponent(p)]))];
  return (error) => {
    let text = maskCredentialsInText(errorWords(error));
    for (const form of forms) text = text.split(form).join('***');
    return text;
  };
}
