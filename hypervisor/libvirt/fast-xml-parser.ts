/**
 * fast-xml-parser from its single-file CommonJS build. The package's ES
 * module entry is some twenty files (and fast-xml-builder's) that Node
 * resolves, reads and links one by one at start-up: about 60 ms against 18 ms
 * for the same version's bundled build, where `novalet validate` has 0.5 s in
 * all (bench/RESULTS.md).
 */
import { createRequire } from 'node:module';
import type * as FastXmlParser from 'fast-xml-parser';

export const { XMLParser, XMLBuilder, XMLValidator } = createRequire(import.meta.url)('fast-xml-parser') as typeof FastXmlParser;
