/**
 * libuv's atfork handler against libvirt's double fork (fork-safety.ts).
 * Children start with every descriptor above stderr closed, as a plain
 * `node` from a shell would — wherever that puts libuv's pipe with this
 * host's Node (4/5 on Debian 12, 5/6 on Debian 13) — and log libvirt to a
 * file as every novalet command does, which makes libvirt's forked child use
 * descriptor 5 too. Vitest's forks log libvirt to stderr (test/libvirt-log.ts).
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { forkHazard, hasForkSafeLayout, libvirtChildFds, libvirtLogFiles } from '../../hypervisor/libvirt/fork-safety.js';
import { onlyStdioThen, processesMentioning, REPO, runNodeProgram, TEST_POOL_BASE } from './libvirt-test-support.js';

function startDomainProgram(relaunch: boolean, logOutputs = '3:file:/tmp/novalet-test-fork-safety-libvirt.log'): string {
  return `
    process.env.LIBVIRT_LOG_OUTPUTS = ${JSON.stringify(logOutputs)};
    const { forkHazard, hasForkSafeLayout, runForkSafe } = await import('./dist/hypervisor/libvirt/fork-safety.js');
    const { openEmbeddedRootFromPool } = await import('./dist/hypervisor/libvirt/embedded-root-pool.js');
    if (${relaunch}) {
      const code = await runForkSafe();
      if (code !== null) process.exit(code);
    }
    const { connection, root } = await openEmbeddedRootFromPool(${JSON.stringify(TEST_POOL_BASE)});
    const name = 'novalet-test-fork-' + process.pid;
    const domain = await connection.defineDomain(
      "<domain type='qemu'><name>" + name + "</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>" +
      "<os><type arch='x86_64' machine='pc'>hvm</type></os><devices><serial type='file'><source path='" + root + "/" + name + ".log'/></serial></devices></domain>");
    const answer = { hazard: forkHazard(), relaunched: process.env.NOVALET_FORK_SAFE_FDS ?? null, name, layout: hasForkSafeLayout() };
    try {
      await domain.create();
      answer.state = (await domain.getState()).state;
      await domain.destroy();
    } catch (error) {
      answer.code = error.code;
      answer.message = error.message;
    } finally {
      await domain.undefine();
      await domain.free();
      await connection.close();
    }
    console.log(JSON.stringify(answer));
    process.exitCode = 7;
  `;
}

describe('fork safety', () => {
  it('knows how many descriptors libvirt\'s child uses: its handshake pipes, then each log file it re-opens', () => {
    expect(libvirtLogFiles('3:stderr')).toBe(0);
    expect(libvirtLogFiles('3:file:/var/log/a.log 1:file:/tmp/b.log 4:stderr')).toBe(2);
    expect(libvirtLogFiles(undefined)).toBe(0);
    expect(libvirtChildFds(0)).toBe(4);
    expect(libvirtChildFds(1)).toBe(5);
  });

  it('this vitest fork has no hazard while libvirt logs to stderr', () => {
    expect(process.env.LIBVIRT_LOG_OUTPUTS).toBe('3:stderr');
    expect(forkHazard()).toBeNull();
  });

  it('a plain node process logging libvirt to a file: wherever libuv sits, starting a domain fails early with LIBVIRT_FORK_HAZARD', async () => {
    const result = await runNodeProgram(startDomainProgram(false), 60_000, { onlyStdio: true });
    expect(result.code).toBe(7);
    const answer = JSON.parse(result.stdout.trim()) as Record<string, unknown>;
    expect(answer).toMatchObject({ relaunched: null, code: 'LIBVIRT_FORK_HAZARD' });
    const [low, high] = answer.hazard as [number, number];
    expect(high).toBe(low + 1);
    expect(low).toBeLessThanOrEqual(libvirtChildFds(1));
    expect(answer.message).toMatch(new RegExp(`^libvirt's embedded driver cannot start domain novalet-test-fork-\\d+ .* in this process: Node's libuv holds descriptors ${low} and ${high}`));
    expect(await processesMentioning(`guest=${String(answer.name)},`)).toEqual([]);
  }, 60_000);

  it('relaunched by runForkSafe, the same program starts QEMU, and its exit code comes back', async () => {
    const result = await runNodeProgram(startDomainProgram(true), 60_000, { onlyStdio: true });
    expect(result.code).toBe(7);
    const answer = JSON.parse(result.stdout.trim()) as Record<string, unknown>;
    expect(answer).toMatchObject({ hazard: null, relaunched: '1', state: 'running', layout: true });
    expect(await processesMentioning(`guest=${String(answer.name)},`)).toEqual([]);
  }, 60_000);

  // What shells, sudo, systemd and CI pass differ; none may decide whether QEMU starts.
  it.each([
    ['descriptor 3', '3</dev/null'],
    ['descriptors 3 to 6', '3</dev/null 4</dev/null 5</dev/null 6</dev/null'],
    ['3 and 5 with a gap at 4', '3</dev/null 5</dev/null'],
    ['a pipe at 3, then 4', '3< <(:) 4</dev/null'],
  ])('started with %s inherited, runForkSafe relaunches into the known layout and QEMU starts', async (_what, inherited) => {
    const result = await runNodeProgram(startDomainProgram(true), 60_000, { inherited });
    expect(result.code).toBe(7);
    const answer = JSON.parse(result.stdout.trim()) as Record<string, unknown>;
    expect(answer).toMatchObject({ relaunched: '1', state: 'running', layout: true });
    expect(await processesMentioning(`guest=${String(answer.name)},`)).toEqual([]);
  }, 60_000);

  it('a process started with 3 to 12 on /dev/null has the layout already and is not relaunched', async () => {
    const inherited = Array.from({ length: 10 }, (_, i) => `${i + 3}</dev/null`).join(' ');
    const result = await runNodeProgram(startDomainProgram(true), 60_000, { inherited });
    expect(result.code).toBe(7);
    expect(JSON.parse(result.stdout.trim())).toMatchObject({ relaunched: null, state: 'running', layout: true });
  }, 60_000);

  it('this vitest fork does not have the layout (so the relaunch is what gives it)', () => {
    expect(hasForkSafeLayout()).toBe(false);
  });

  it('a relaunched process never outlives the one that relaunched it: killed with SIGKILL, the parent takes the child with it, by SIGTERM', async () => {
    const mark = path.join(mkdtempSync(path.join(tmpdir(), 'novalet-parent-death-')), 'ended');
    const program = `
      const { runForkSafe } = await import('./dist/hypervisor/libvirt/fork-safety.js');
      const code = await runForkSafe();
      if (code !== null) process.exit(code);
      const { writeFileSync } = await import('node:fs');
      // As a command's lifetime does: SIGTERM is the clean way out.
      process.on('SIGTERM', () => { writeFileSync(${JSON.stringify(mark)}, 'SIGTERM'); process.exit(143); });
      console.log(JSON.stringify({ child: process.pid, parent: process.ppid }));
      setInterval(() => undefined, 1000);
    `;
    const [file, ...args] = [...onlyStdioThen(''), process.execPath, '--input-type=module', '-e', program];
    const parent = spawn(file!, args, { cwd: REPO, stdio: ['ignore', 'pipe', 'inherit'] });
    let child = 0;
    try {
      const line = await new Promise<string>((resolve, reject) => {
        let out = '';
        parent.stdout!.on('data', (d: Buffer) => {
          out += d.toString();
          if (out.includes('\n')) resolve(out.split('\n')[0]!);
        });
        parent.on('exit', () => reject(new Error(`the parent ended first: ${out}`)));
      });
      const pids = JSON.parse(line) as { child: number; parent: number };
      child = pids.child;
      expect(pids.parent).toBe(parent.pid);
      parent.kill('SIGKILL');
      // A wide margin: the child learns it at once from its end of the socket pair.
      const deadline = Date.now() + 20_000;
      while (existsSync(`/proc/${child}`) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
      expect(existsSync(`/proc/${child}`), 'the relaunched child ended').toBe(false);
      expect(readFileSync(mark, 'utf8')).toBe('SIGTERM');
    } finally {
      if (child !== 0 && existsSync(`/proc/${child}`)) process.kill(child, 'SIGKILL');
      parent.kill('SIGKILL');
    }
  }, 60_000);
});
