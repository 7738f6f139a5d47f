/** The embedded driver's root directory and URI; no libvirt needed. */
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { EMBEDDED_QEMU_CONF, embeddedRootOf, embeddedUri, prepareEmbeddedRoot } from '../../hypervisor/libvirt/embedded-root.js';

let dir: string;

beforeEach(async () => {
  dir = await mkdtemp('/tmp/novalet-embedded-root-');
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('prepareEmbeddedRoot', () => {
  it('creates DIR/etc/qemu.conf with what these hosts need and returns the URI', async () => {
    const root = `${dir}/libvirt`;
    expect(await prepareEmbeddedRoot(root)).toBe(`qemu:///embed?root=${root}`);
    const conf = await readFile(`${root}/etc/qemu.conf`, 'utf8');
    expect(conf).toBe(EMBEDDED_QEMU_CONF);
    for (const line of ['stdio_handler = "file"', 'user = "root"', 'group = "root"', 'security_driver = "none"', 'cgroup_controllers = [ ]']) {
      expect(conf.split('\n')).toContain(line);
    }
  });

  it('leaves an identical file alone and rewrites one that differs', async () => {
    await prepareEmbeddedRoot(dir);
    const conf = `${dir}/etc/qemu.conf`;
    const first = await stat(conf);
    await new Promise((resolve) => setTimeout(resolve, 20));
    await prepareEmbeddedRoot(dir);
    expect((await stat(conf)).mtimeMs).toBe(first.mtimeMs);
    await writeFile(conf, 'user = "libvirt-qemu"\n');
    await prepareEmbeddedRoot(dir);
    expect(await readFile(conf, 'utf8')).toBe(EMBEDDED_QEMU_CONF);
  });

  it('refuses a relative directory', async () => {
    await expect(prepareEmbeddedRoot('var/lib/novalet')).rejects.toMatchObject({
      code: 'EMBEDDED_ROOT_NOT_ABSOLUTE',
      message: 'The embedded libvirt root "var/lib/novalet" is not an absolute path. Give an absolute directory, such as /var/lib/novalet/libvirt.',
    });
  });

  it('says so when the directory cannot be created', async () => {
    await writeFile(`${dir}/file`, '');
    await expect(prepareEmbeddedRoot(`${dir}/file/libvirt`)).rejects.toMatchObject({ code: 'EMBEDDED_ROOT_UNWRITABLE' });
  });
});

describe('embedded URIs', () => {
  it('escape what would break the query and read back to the same directory', () => {
    expect(embeddedUri('/var/lib/novalet/libvirt')).toBe('qemu:///embed?root=/var/lib/novalet/libvirt');
    const odd = '/srv/a b&c=d';
    expect(embeddedUri(odd)).toBe('qemu:///embed?root=/srv/a%20b%26c%3Dd');
    expect(embeddedRootOf(embeddedUri(odd))).toBe(odd);
    expect(embeddedRootOf('qemu:///system')).toBeNull();
  });
});
