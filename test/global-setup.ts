import { execFileSync } from 'node:child_process';
import path from 'node:path';

/** CLI and end-to-end tests run the built `novalet`: build it once, fresh, before any test. */
export default function setup(): void {
  const top = path.resolve(import.meta.dirname, '..');
  execFileSync(process.execPath, [path.join(top, 'node_modules/typescript/bin/tsc'), '-p', path.join(top, 'tsconfig.json')], {
    stdio: 'inherit',
  });
}
