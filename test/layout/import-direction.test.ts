import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * The layout rule (docs/architecture.md): which folders — and, inside
 * hypervisor/, which rooms — each folder's files may import. The most
 * specific source prefix applies. agent/ sees the hypervisor only through the
 * ComputeDriver interface; hypervisor/ sees messaging/ only through the wire
 * contracts; host/ (facts) and libvirt/ (the binding) sit at the bottom; no
 * room imports up to the two files at the top of hypervisor/ (the assembly
 * and the driver interface it re-exports): what a room needs lives in a room,
 * or is passed in; service/ (what every service is made of) sits above
 * messaging/, below the services (agent/, scheduler-filters/).
 */
const EVERYTHING = ['config/', 'hypervisor/', 'messaging/', 'service/', 'agent/', 'scheduler-filters/', 'cli/', 'test/', 'bench/'];
const ROOMS = ['hypervisor/host/', 'hypervisor/virt-type/', 'hypervisor/cpu/', 'hypervisor/instance/', 'hypervisor/validation/', 'hypervisor/libvirt/'];
const ANY_ROOM = [...ROOMS, 'config/', 'messaging/contracts/'];
const MAY_IMPORT: ReadonlyArray<readonly [string, readonly string[]]> = [
  ['config/', ['config/']],
  ['messaging/contracts/', ['messaging/contracts/', 'config/']],
  ['messaging/', ['messaging/', 'config/']],
  ['hypervisor/libvirt/', ['hypervisor/libvirt/', 'config/']],
  ['hypervisor/host/', ['hypervisor/host/', 'hypervisor/libvirt/', 'config/', 'messaging/contracts/']],
  ['hypervisor/virt-type/', ANY_ROOM],
  ['hypervisor/cpu/', ANY_ROOM],
  ['hypervisor/instance/', ANY_ROOM],
  ['hypervisor/validation/', ANY_ROOM],
  ['hypervisor/', ['hypervisor/', 'config/', 'messaging/contracts/']],
  ['service/', ['service/', 'config/', 'messaging/']],
  ['agent/', ['agent/', 'config/', 'messaging/', 'service/', 'hypervisor/compute-driver.ts', 'hypervisor/compute-host.ts']],
  ['scheduler-filters/', ['scheduler-filters/', 'config/', 'messaging/', 'service/']],
  ['cli/', ['cli/', 'config/', 'hypervisor/', 'messaging/', 'service/', 'agent/', 'scheduler-filters/']],
  ['bench/', EVERYTHING],
  ['test/', EVERYTHING],
];

const top = path.resolve(import.meta.dirname, '../..');

function tsFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const full = path.join(dir, name);
    if (name === 'fixtures') return [];
    if (statSync(full).isDirectory()) return tsFiles(full);
    return name.endsWith('.ts') ? [full] : [];
  });
}

/** What a file at `file` (relative to the repository) imports, as repository paths of .ts files. */
export function importedPaths(file: string, text: string): string[] {
  const specifiers = [...text.matchAll(/(?:from|import)\s*\(?\s*['"](\.[^'"]+)['"]/g)].map((m) => m[1] as string);
  return specifiers.map((s) => path.relative(top, path.resolve(top, path.dirname(file), s)).replace(/\.js$/, '.ts'));
}

/** `file → target` for every import of `text` (a file at `file`) that the rule forbids. */
export function violations(file: string, text: string): string[] {
  const rule = MAY_IMPORT.find(([source]) => file.startsWith(source));
  if (!rule) return [`${file}: in no folder of the layout`];
  return importedPaths(file, text)
    .filter((target) => !rule[1].some((allowed) => (allowed.endsWith('/') ? target.startsWith(allowed) : target === allowed)))
    .map((target) => `${file} → ${target}`);
}

describe('import direction (docs/architecture.md)', () => {
  // Every top-level folder, its rooms included.
  for (const folder of EVERYTHING) {
    it(`${folder} imports only what the layout allows`, () => {
      const files = tsFiles(path.join(top, folder));
      const offending = files.flatMap((file) => violations(path.relative(top, file), readFileSync(file, 'utf8')));
      expect(offending).toEqual([]);
    });
  }

  it('hypervisor/ has no file outside a room but the driver interface and the assembly', () => {
    const loose = readdirSync(path.join(top, 'hypervisor')).filter((name) => name.endsWith('.ts'));
    expect(loose.sort()).toEqual(['compute-driver.ts', 'compute-host.ts']);
  });

  it('every room of hypervisor/ has its row (a new room is placed in the layout, not let through)', () => {
    const rooms = readdirSync(path.join(top, 'hypervisor'), { withFileTypes: true })
      .filter((entry) => entry.isDirectory())
      .map((entry) => `hypervisor/${entry.name}/`);
    expect(rooms.sort()).toEqual([...ROOMS].sort());
    for (const room of ROOMS) expect(MAY_IMPORT.some(([source]) => source === room), room).toBe(true);
  });

  it('no name repeats its room', () => {
    const repeating = readdirSync(path.join(top, 'hypervisor'), { withFileTypes: true })
      .filter((entry) => entry.isDirectory())
      .flatMap((room) => readdirSync(path.join(top, 'hypervisor', room.name)).filter((name) => name.startsWith(`${room.name}-`)).map((name) => `hypervisor/${room.name}/${name}`));
    expect(repeating).toEqual([]);
  });

  it('sees an import against the rule (the check can fail)', () => {
    const source = (target: string) => `import { x } from '${target}';\n`;
    // agent/ reaching past the ComputeDriver interface, or into scheduler-filters/.
    expect(violations('agent/service.ts', source('../hypervisor/instance/libvirt-driver.js'))).toEqual(['agent/service.ts → hypervisor/instance/libvirt-driver.ts']);
    expect(violations('agent/service.ts', source('../scheduler-filters/host-selection.js'))).toEqual(['agent/service.ts → scheduler-filters/host-selection.ts']);
    expect(violations('agent/service.ts', source('../hypervisor/compute-driver.js'))).toEqual([]);
    // hypervisor/ reaching past the wire contracts into the AMQP layer; host facts reaching up.
    expect(violations('hypervisor/cpu/x.ts', source('../../messaging/amqp/connection.js'))).toEqual(['hypervisor/cpu/x.ts → messaging/amqp/connection.ts']);
    expect(violations('hypervisor/host/x.ts', source('../virt-type/decision.js'))).toEqual(['hypervisor/host/x.ts → hypervisor/virt-type/decision.ts']);
    // A room reaching up to the top of hypervisor/; rooms among themselves, and the top reaching down, are fine.
    expect(violations('hypervisor/instance/x.ts', source('../compute-driver.js'))).toEqual(['hypervisor/instance/x.ts → hypervisor/compute-driver.ts']);
    expect(violations('hypervisor/validation/x.ts', source('../compute-host.js'))).toEqual(['hypervisor/validation/x.ts → hypervisor/compute-host.ts']);
    expect(violations('hypervisor/virt-type/x.ts', source('../cpu/guest.js'))).toEqual([]);
    expect(violations('hypervisor/compute-host.ts', source('./instance/libvirt-driver.js'))).toEqual([]);
    expect(violations('scheduler-filters/x.ts', source('../hypervisor/host/facts.js'))).toEqual(['scheduler-filters/x.ts → hypervisor/host/facts.ts']);
    expect(violations('cli/x.ts', source('../bench/run-all.js'))).toEqual(['cli/x.ts → bench/run-all.ts']);
    // service/ knows no service and no hypervisor: every service uses it alike; messaging/ sits below it.
    expect(violations('service/x.ts', source('../agent/metrics.js'))).toEqual(['service/x.ts → agent/metrics.ts']);
    expect(violations('service/x.ts', source('../hypervisor/compute-driver.js'))).toEqual(['service/x.ts → hypervisor/compute-driver.ts']);
    expect(violations('service/x.ts', source('../scheduler-filters/host-selection.js'))).toEqual(['service/x.ts → scheduler-filters/host-selection.ts']);
    expect(violations('service/x.ts', source('../messaging/broker.js'))).toEqual([]);
    expect(violations('agent/x.ts', source('../service/http-server.js'))).toEqual([]);
    expect(violations('scheduler-filters/x.ts', source('../service/metrics.js'))).toEqual([]);
    expect(violations('messaging/x.ts', source('../service/metrics.js'))).toEqual(['messaging/x.ts → service/metrics.ts']);
  });
});

describe('small modules (docs/architecture.md)', () => {
  // The option table is one table by design; everything else is split by what it does.
  const MAX_LINES = 400;
  const EXEMPT = new Set(['config/option-definitions.ts']);
  const SOURCE_FOLDERS = ['config/', 'hypervisor/', 'messaging/', 'service/', 'agent/', 'scheduler-filters/', 'cli/'];

  it(`no source file is over ${MAX_LINES} lines but the option table`, () => {
    const over = SOURCE_FOLDERS.flatMap((folder) => tsFiles(path.join(top, folder)))
      .map((file) => ({ file: path.relative(top, file), lines: readFileSync(file, 'utf8').split('\n').length - 1 }))
      .filter(({ file, lines }) => lines > MAX_LINES && !EXEMPT.has(file));
    expect(over).toEqual([]);
  });
});
