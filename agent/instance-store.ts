import { mkdir, open, readdir, readFile, rename } from 'node:fs/promises';
import path from 'node:path';
import { NovaletError } from '../config/novalet-error.js';
import type { InstanceRecord } from './instance-record.js';

/**
 * Instance records as one JSON file each under `<state_path>/instances.d`,
 * written atomically (temporary file, fsync, rename): a crash leaves the old
 * record or the new one, never half of one. Records outlive the instance's
 * files: a deleted instance keeps its record in state 'deleted', as nova
 * keeps soft-deleted rows.
 */
export class InstanceStore {
  constructor(readonly dir: string) {}

  private file(uuid: string): string {
    return path.join(this.dir, `${uuid}.json`);
  }

  async write(record: InstanceRecord): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    const target = this.file(record.uuid);
    const tmp = `${target}.${process.pid}.${Date.now()}.tmp`;
    const handle = await open(tmp, 'w', 0o600);
    try {
      await handle.writeFile(`${JSON.stringify(record, null, 2)}\n`);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(tmp, target);
  }

  async read(uuid: string): Promise<InstanceRecord | null> {
    let text: string;
    try {
      text = await readFile(this.file(uuid), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
    try {
      return JSON.parse(text) as InstanceRecord;
    } catch {
      throw new NovaletError('INSTANCE_RECORD_CORRUPT', `The instance record ${this.file(uuid)} is not valid JSON.`, 'Restore it from the domain\'s metadata or remove it.');
    }
  }

  async list(): Promise<InstanceRecord[]> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    const records = await Promise.all(names.filter((n) => n.endsWith('.json')).map((n) => this.read(n.slice(0, -'.json'.length))));
    return records.filter((r): r is InstanceRecord => r !== null);
  }
}
