import { stat } from 'node:fs/promises';

/** Whether something exists at `file` (any error, such as ENOENT or EACCES on a parent, counts as no). */
export async function pathExists(file: string): Promise<boolean> {
  try {
    await stat(file);
    return true;
  } catch {
    return false;
  }
}
