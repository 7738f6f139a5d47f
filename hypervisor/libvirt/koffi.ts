/**
 * koffi, loaded with require(). koffi is a CommonJS package: imported as an
 * ES module, Node first scans its source for named exports, which costs a
 * command's start-up about 20 ms for nothing (bench/RESULTS.md, validate).
 * Types come from the package itself: `import type { IKoffiLib } from 'koffi'`.
 */
import { createRequire } from 'node:module';
import type * as KoffiModule from 'koffi';

export const koffi = createRequire(import.meta.url)('koffi') as typeof KoffiModule;
