/**
 * Launch benchmarks, each against a baseline measured in the same run,
 * interleaved (these machines are noisy):
 *
 * 1. spawn → the test guest's marker under TCG, through novalet's launch path
 *    (embedded libvirt via koffi), against qemu-system-x86_64 started by hand
 *    with the same kernel, initramfs, memory and CPU model. Target: ≤ 1.15×.
 * 2. spawn → domain running (libvirt's create returned) for a qcow2 image
 *    already in the image cache. Target: p50 ≤ 150 ms.
 *
 *   npm run build && node dist/bench/launch-latency.js [rounds]
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseConfigText } from '../config/load-config.js';
import { waitForConsoleLine } from '../hypervisor/instance/console-follow.js';
import { validateInstanceSpec } from '../hypervisor/instance/spec.js';
import { assembleComputeHost } from '../hypervisor/compute-host.js';
import { openEmbeddedRootFromPool } from '../hypervisor/libvirt/embedded-root-pool.js';
import { runForkSafe } from '../hypervisor/libvirt/fork-safety.js';
import { READY_MARKER, testGuestCmdline, testGuestFiles } from '../hypervisor/virt-type/test-guest.js';

// libvirt cannot fork QEMU from a plainly started node: see hypervisor/libvirt/fork-safety.ts.
const relaunched = await runForkSafe();
if (relaunched !== null) process.exit(relaunched);
const rounds = Number(process.argv[2] ?? 8);
const guest = testGuestFiles(process.env.NOVALET_TEST_GUEST_DIR ?? '/var/lib/novalet/test-guest');
const MEMORY = 256;
const work = mkdtempSync(path.join(tmpdir(), 'novalet-bench-'));

async function bareQemu(i: number): Promise<number> {
  const log = path.join(work, `bare-${i}.log`);
  const start = performance.now();
  const qemu = spawn('/usr/bin/qemu-system-x86_64', [
    '-accel', 'tcg', '-machine', 'pc', '-cpu', 'qemu64', '-m', String(MEMORY), '-smp', '1',
    '-display', 'none', '-nodefaults', '-no-user-config',
    '-kernel', guest.kernel, '-initrd', guest.initramfs, '-append', testGuestCmdline(`bare-${i}`),
    '-chardev', `file,id=s0,path=${log}`, '-device', 'isa-serial,chardev=s0',
  ], { stdio: 'ignore' });
  try {
    const line = await waitForConsoleLine(log, READY_MARKER, 120_000);
    if (!line) throw new Error('bare QEMU printed no marker');
    return performance.now() - start;
  } finally {
    qemu.kill('SIGKILL');
  }
}

const config = parseConfigText(`[DEFAULT]\nstate_path = ${work}\n[libvirt]\nvirt_type = qemu\ncpu_mode = none\n`, 'bench.conf').values;
const connection = (await openEmbeddedRootFromPool('/var/tmp/novalet-bench-libvirt')).connection;
const { driver } = await assembleComputeHost({ config, purpose: 'command', selfTest: 'run', connection });

async function novaletToMarker(i: number): Promise<number> {
  const spec = validateInstanceSpec({ name: `bench-${i}`, vcpus: 1, memoryMiB: MEMORY, kernel: guest.kernel, ramdisk: guest.initramfs, cmdline: testGuestCmdline(`bench-${i}`) });
  const start = performance.now();
  try {
    const launched = await driver.spawn(spec);
    const line = await waitForConsoleLine(launched.consoleLog, READY_MARKER, 120_000);
    if (!line) throw new Error('novalet guest printed no marker');
    return performance.now() - start;
  } finally {
    await driver.destroy(spec.uuid);
  }
}

async function novaletToRunning(i: number, imageChecksum: string): Promise<number> {
  const spec = validateInstanceSpec({ name: `run-${i}`, vcpus: 1, memoryMiB: MEMORY, image: { source: guest.disk, checksum: imageChecksum } });
  const start = performance.now();
  try {
    await driver.spawn(spec);
    return performance.now() - start;
  } finally {
    await driver.destroy(spec.uuid);
  }
}

const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))] ?? NaN;

try {
  // Warm-up: QEMU binary in the page cache, the image in novalet's cache.
  await bareQemu(-1);
  await novaletToMarker(-1);
  const warm = await driver.imageCache.fetch({ source: guest.disk });
  const checksum = `sha256:${warm.sha256}`;

  const bare: number[] = [];
  const viaNovalet: number[] = [];
  const toRunning: number[] = [];
  for (let i = 0; i < rounds; i++) {
    bare.push(await bareQemu(i));
    viaNovalet.push(await novaletToMarker(i));
    toRunning.push(await novaletToRunning(i, checksum));
  }
  const row = (name: string, xs: number[]) => `| ${name} | ${xs.length} | ${pct(xs, 50).toFixed(0)} | ${pct(xs, 90).toFixed(0)} | ${Math.min(...xs).toFixed(0)} |`;
  console.log('| measurement | runs | p50 ms | p90 ms | min ms |');
  console.log('|---|---|---|---|---|');
  console.log(row('spawn → marker, novalet (TCG, cpu_mode none)', viaNovalet));
  console.log(row('start → marker, qemu-system-x86_64 by hand (TCG, qemu64)', bare));
  console.log(row('spawn → running, novalet, qcow2 from a warm cache', toRunning));
  const ratio = pct(viaNovalet, 50) / pct(bare, 50);
  console.log(`\nspawn → marker: novalet / bare QEMU at p50 = ${ratio.toFixed(3)} (target ≤ 1.15: ${ratio <= 1.15 ? 'met' : 'NOT met'})`);
  console.log(`spawn → running p50 = ${pct(toRunning, 50).toFixed(0)} ms (target ≤ 150 ms: ${pct(toRunning, 50) <= 150 ? 'met' : 'NOT met'})`);
} finally {
  await connection.close();
  rmSync(work, { recursive: true, force: true });
}
