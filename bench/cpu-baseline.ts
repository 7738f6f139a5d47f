/**
 * Benchmark: the baseline CPU of 100 host CPUs (target: under 1 s), through
 * novalet's binding, against virsh hypervisor-cpu-baseline on the same file
 * in the same run (virsh on an embedded root of its own).
 *   npm run build && node dist/bench/cpu-baseline.js [runs]
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { readCpuDefinitions } from '../hypervisor/cpu/definitions.js';
import { EMBEDDED_QEMU_CONF } from '../hypervisor/libvirt/embedded-root.js';
import { openEmbeddedRootFromPool } from '../hypervisor/libvirt/embedded-root-pool.js';
import { runForkSafe } from '../hypervisor/libvirt/fork-safety.js';

const relaunched = await runForkSafe();
if (relaunched !== null) process.exit(relaunched);
const runs = Number(process.argv[2] ?? 5);
const work = mkdtempSync(path.join(tmpdir(), 'novalet-bench-cpu-'));

// 100 hosts of one pool: Skylake-era Intel CPUs, each missing a few features at random (seeded).
let seed = 42;
const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
const optional = ['vmx', 'pcid', 'invpcid', 'avx2', 'bmi1', 'bmi2', 'erms', 'rtm', 'hle', 'mpx', 'adx', 'smap', 'rdseed', 'xsavec', 'xgetbv1', 'clflushopt', 'pdpe1gb', 'abm', '3dnowprefetch', 'ssbd', 'md-clear', 'spec-ctrl', 'arch-capabilities'];
const hosts = Array.from({ length: 100 }, (_, i) => {
  const features = optional.filter(() => random() > 0.15).map((f) => `    <feature name='${f}'/>`);
  return `<capabilities><host><cpu>\n  <arch>x86_64</arch>\n  <model>Skylake-Client-IBRS</model>\n  <vendor>Intel</vendor>\n  <topology sockets='1' cores='${2 + (i % 8)}' threads='2'/>\n${features.join('\n')}\n</cpu></host></capabilities>`;
});
const file = path.join(work, 'pool.xml');
writeFileSync(file, hosts.join('\n'));
const xmls = readCpuDefinitions(hosts.join('\n'), 'pool.xml').map((c) => c.xml);

const virshRoot = '/var/tmp/novalet-bench-virsh';
mkdirSync(path.join(virshRoot, 'etc'), { recursive: true });
writeFileSync(path.join(virshRoot, 'etc/qemu.conf'), EMBEDDED_QEMU_CONF);
const virsh = () => execFileSync('virsh', ['-c', `qemu:///embed?root=${virshRoot}`, 'hypervisor-cpu-baseline', file, '--virttype', 'qemu', '--arch', 'x86_64'], { env: { ...process.env, LIBVIRT_LOG_OUTPUTS: '1:file:/dev/null' } }).toString();

const connection = (await openEmbeddedRootFromPool('/var/tmp/novalet-bench-libvirt')).connection;
const target = { virttype: 'qemu', arch: 'x86_64', emulator: '/usr/bin/qemu-system-x86_64' };
try {
  // Warm-up: libvirt's capability cache for both roots.
  const ours = await connection.baselineHypervisorCpu(xmls, target);
  const theirs = virsh();
  const model = (xml: string) => /<model[^>]*>([^<]+)</.exec(xml)?.[1];
  const novalet: number[] = [];
  const viaVirsh: number[] = [];
  for (let i = 0; i < runs; i++) {
    let t = performance.now();
    await connection.baselineHypervisorCpu(xmls, target);
    novalet.push(performance.now() - t);
    t = performance.now();
    virsh();
    viaVirsh.push(performance.now() - t);
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
  console.log('| baseline of 100 host CPUs | runs | median ms | max ms |');
  console.log('|---|---|---|---|');
  console.log(`| novalet (binding, one call) | ${runs} | ${median(novalet).toFixed(0)} | ${Math.max(...novalet).toFixed(0)} |`);
  console.log(`| virsh hypervisor-cpu-baseline (whole command) | ${runs} | ${median(viaVirsh).toFixed(0)} | ${Math.max(...viaVirsh).toFixed(0)} |`);
  console.log(`\nsame model as virsh: ${model(ours) === model(theirs) ? 'yes' : 'NO'} (${model(ours)})`);
  console.log(`target under 1 s: ${Math.max(...novalet) < 1000 ? 'met' : 'NOT met'}`);
} finally {
  await connection.close();
  rmSync(work, { recursive: true, force: true });
}
