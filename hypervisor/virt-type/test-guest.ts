import path from 'node:path';

/**
 * The small test guest built by deploy/build-test-guest.sh: what the
 * self-test boots, and the marker its /init prints on the serial console.
 */

export const READY_MARKER = /NOVALET-TEST-GUEST-READY name=(\S+) cpu_model=(.*?) flags=(.*)$/;

export interface TestGuestFiles {
  kernel: string;
  initramfs: string;
  disk: string;
  manifest: string;
}

export function testGuestFiles(dir: string): TestGuestFiles {
  return {
    kernel: path.join(dir, 'vmlinuz'),
    initramfs: path.join(dir, 'initramfs.cpio.gz'),
    disk: path.join(dir, 'disk.qcow2'),
    manifest: path.join(dir, 'manifest.json'),
  };
}

/** What the guest prints when it ignores the ACPI power button (`ignoreAcpi`). */
export const ACPI_IGNORED_MARKER = 'NOVALET-TEST-GUEST-ACPI-IGNORED';

/**
 * The kernel command line that makes the guest print `name` in its marker;
 * `ignoreAcpi`: the guest ignores the ACPI power button (tests of soft
 * reboots and clean shutdowns of guests that do not answer).
 */
export function testGuestCmdline(name: string, options: { ignoreAcpi?: boolean } = {}): string {
  return `console=ttyS0 novalet.name=${name}${options.ignoreAcpi ? ' novalet.ignore_acpi' : ''}`;
}
