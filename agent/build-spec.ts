/**
 * A build request from the bus (its wire form, already validated) as the
 * compute driver's instance spec. Images come by URL with a checksum (the
 * driver's cache fetches them) or by name: a regular file directly in
 * `[compute] image_dir`, never a path — the validator already refused any
 * name with a slash, and this checks what the name finds.
 */
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { NovaletError } from '../config/novalet-error.js';
import type { InstanceSpec } from '../hypervisor/compute-driver.js';
import type { BuildBody, ImageSource } from '../messaging/contracts/compute-requests.js';

async function fileInImageDir(imageDir: string, name: string, field: string): Promise<string> {
  const file = path.join(imageDir, name);
  // The validator allows only plain names; this guards the join all the same.
  if (path.dirname(file) !== path.resolve(imageDir)) {
    throw new NovaletError('IMAGE_NOT_IN_IMAGE_DIR', `${field} names '${name}', which is not a file name in the image folder ${imageDir}.`, 'Name a file of [compute] image_dir, or give a url with its checksum.');
  }
  let ok = false;
  try {
    ok = (await stat(file)).isFile();
  } catch {
    ok = false;
  }
  if (!ok) {
    throw new NovaletError('IMAGE_NOT_IN_IMAGE_DIR', `${field} names '${name}', which is not a regular file in the image folder ${imageDir}.`, 'Put the image into [compute] image_dir on this host, or give a url with its checksum.');
  }
  return file;
}

/** A kernel or ramdisk: a file of the image folder by name, or a URL (with its checksum) for the driver's image cache. */
async function bootFile(imageDir: string, source: ImageSource, field: string): Promise<{ file: string; checksum?: string }> {
  if (source.name !== undefined) return { file: await fileInImageDir(imageDir, source.name, `${field}.name`) };
  return { file: source.url!, checksum: source.checksum! };
}

export async function instanceSpecOf(build: BuildBody, imageDir: string): Promise<InstanceSpec> {
  const { instance } = build;
  const image = instance.image;
  const spec: InstanceSpec = {
    uuid: instance.uuid,
    name: instance.name,
    vcpus: instance.flavor.vcpus,
    memoryMiB: instance.flavor.memory_mb,
    imageProperties: {
      hw_architecture: image.properties['hw_architecture'],
      img_hv_type: image.properties['img_hv_type'],
      hw_machine_type: image.properties['hw_machine_type'],
    },
  };
  if (image.kernel !== undefined) {
    const kernel = await bootFile(imageDir, image.kernel, 'body.instance.image.kernel');
    spec.kernel = kernel.file;
    spec.kernelChecksum = kernel.checksum;
    if (image.ramdisk !== undefined) {
      const ramdisk = await bootFile(imageDir, image.ramdisk, 'body.instance.image.ramdisk');
      spec.ramdisk = ramdisk.file;
      spec.ramdiskChecksum = ramdisk.checksum;
    }
    if (image.cmdline !== undefined) spec.cmdline = image.cmdline;
  } else if (image.url !== undefined) {
    spec.image = { source: image.url, checksum: image.checksum };
  } else if (image.name !== undefined) {
    spec.image = { source: await fileInImageDir(imageDir, image.name, 'body.instance.image.name') };
  }
  return spec;
}
