import type { IKoffiLib, KoffiFunction } from 'koffi';
import { LIBVIRT_SONAME } from './constants.js';
import { koffi } from './koffi.js';

/**
 * libvirt's C library, loaded once through koffi. This file owns only the
 * loading; the binding of the API functions builds on `loadLibvirt()`.
 */


let library: IKoffiLib | null = null;

export function loadLibvirt(): IKoffiLib {
  library ??= koffi.load(LIBVIRT_SONAME);
  return library;
}

export interface LibvirtAvailability {
  loadable: boolean;
  /** libvirt's version as "major.minor.micro", when loadable. */
  version: string | null;
  /** Why it could not be loaded. */
  error: string | null;
}

let getVersion: KoffiFunction | null = null;

/** Loads libvirt.so.0 and asks its version: the cheapest proof that the library works. */
export function checkLibvirtLibrary(): LibvirtAvailability {
  try {
    getVersion ??= loadLibvirt().func(
      'int virGetVersion(_Out_ unsigned long *libVer, const char *type, _Out_ unsigned long *typeVer)',
    );
    const libVer = [0];
    if (getVersion(libVer, null, null) !== 0) {
      return { loadable: true, version: null, error: 'virGetVersion failed' };
    }
    return { loadable: true, version: formatLibvirtVersion(libVer[0] ?? 0), error: null };
  } catch (err) {
    return { loadable: false, version: null, error: (err as Error).message };
  }
}

/** libvirt encodes versions as major * 1,000,000 + minor * 1,000 + micro. */
export function formatLibvirtVersion(encoded: number): string {
  const major = Math.floor(encoded / 1_000_000);
  const minor = Math.floor((encoded % 1_000_000) / 1000);
  const micro = encoded % 1000;
  return `${major}.${minor}.${micro}`;
}
