/**
 * Certificates for TLS tests, made with the openssl command (EC P-256 keys:
 * quick to make): a CA, a server certificate it signed for 127.0.0.1 and
 * localhost, a client certificate it signed, the client's certificate and
 * key in one file (as Python's ssl takes them when no key file is given),
 * and a second CA that signed nothing here. Valid for two days.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

export interface TestPki {
  caFile: string;
  serverCertFile: string;
  serverKeyFile: string;
  clientCertFile: string;
  clientKeyFile: string;
  /** The client's certificate followed by its key. */
  clientCombinedFile: string;
  /** A CA that signed neither certificate. */
  otherCaFile: string;
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'], timeout: 30_000 });
}

function selfSignedCa(dir: string, name: string): void {
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.pem`, '-days', '2', '-subj', `/CN=novalet test ${name}`], dir);
}

function signed(dir: string, name: string, subject: string, extensions: string): void {
  writeFileSync(path.join(dir, `${name}.ext`), `${extensions}\n`);
  openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', subject], dir);
  openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.pem`, '-days', '2', '-extfile', `${name}.ext`], dir);
}

/** Makes the files in `dir` (which must exist). */
export function makeTestPki(dir: string): TestPki {
  selfSignedCa(dir, 'ca');
  selfSignedCa(dir, 'other-ca');
  signed(dir, 'server', '/CN=localhost', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth');
  signed(dir, 'client', '/CN=novalet-client', 'extendedKeyUsage=clientAuth');
  const at = (file: string) => path.join(dir, file);
  writeFileSync(at('client-combined.pem'), Buffer.concat([readFileSync(at('client.pem')), readFileSync(at('client.key'))]));
  return {
    caFile: at('ca.pem'),
    serverCertFile: at('server.pem'),
    serverKeyFile: at('server.key'),
    clientCertFile: at('client.pem'),
    clientKeyFile: at('client.key'),
    clientCombinedFile: at('client-combined.pem'),
    otherCaFile: at('other-ca.pem'),
  };
}
