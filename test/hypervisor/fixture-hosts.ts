/** Where the captured host trees live, for the hypervisor tests. */
import path from 'node:path';

export const FIXTURE_HOSTS = path.resolve(import.meta.dirname, '../fixtures/hosts');

export function fixtureRoot(name: string): string {
  return path.join(FIXTURE_HOSTS, name);
}
