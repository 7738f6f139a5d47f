/**
 * The start-up sweep (instance/leftovers.ts) against real libvirt: only
 * domains a command or the self-test made, whose process is gone, are
 * removed — with the command's instance folder and the self-test's work
 * folder. The compute service's instances, live commands' domains and
 * domains novalet did not make stay, whoever's process is gone.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { processIsGone, sweepLeftovers } from '../../hypervisor/instance/leftovers.js';
import { NOVALET_METADATA_PREFIX, NOVALET_METADATA_URI, parseOwner } from '../../hypervisor/instance/metadata.js';
import type { LibvirtConnection } from '../../hypervisor/libvirt/connection.js';
import type { LibvirtDomain } from '../../hypervisor/libvirt/domain.js';
import { readBootId } from '../../hypervisor/virt-type/self-test.js';
import { minimalDomainXml, openTestRoot, removeDomain, testDomainName } from '../libvirt/libvirt-test-support.js';

/** Above any pid_max Linux allows (2^22): no process ever has it. */
const GONE_PID = 4_194_304;

const made: LibvirtDomain[] = [];
let connection: LibvirtConnection | null = null;

afterAll(async () => {
  for (const domain of made) await removeDomain(domain);
  await connection?.close();
});

async function domainOwnedBy(on: LibvirtConnection, owner: { kind: string; pid: number; bootId: string } | null, work: string, name = testDomainName('leftovers')): Promise<LibvirtDomain> {
  const domain = await on.defineDomain(minimalDomainXml({ name, serialLog: path.join(work, `${name}.log`), uuid: randomUUID() }));
  made.push(domain);
  if (owner !== null) {
    await domain.setMetadata('element', `<instance><owner kind='${owner.kind}' pid='${owner.pid}' boot='${owner.bootId}'/></instance>`, NOVALET_METADATA_PREFIX, NOVALET_METADATA_URI);
  }
  return domain;
}

describe('start-up sweep', () => {
  it('reads the owner back from libvirt as it was written', async () => {
    expect(parseOwner(null)).toBeNull();
    expect(parseOwner('<novalet:instance xmlns:novalet="x"><novalet:owner kind="command" pid="12" boot="b"/></novalet:instance>')).toEqual({ kind: 'command', pid: 12, bootId: 'b' });
    expect(parseOwner('<novalet:instance xmlns:novalet="x"><novalet:owner kind="root" pid="12" boot="b"/></novalet:instance>')).toBeNull();
    expect(parseOwner('<novalet:instance xmlns:novalet="x"><novalet:owner kind="command" pid="-1" boot="b"/></novalet:instance>')).toBeNull();
    expect(parseOwner('not xml <')).toBeNull();
  });

  it('a killed process nobody reaped (a zombie) counts as gone; a live one and this one do not', async () => {
    // The inner sleep exits at once; its parent, now `sleep 5`, never waits for it.
    const outer = spawn('/bin/bash', ['-c', 'sleep 0 & echo $!; exec sleep 5'], { stdio: ['ignore', 'pipe', 'ignore'] });
    try {
      const pid = Number(await new Promise<string>((resolve) => outer.stdout.once('data', (d: Buffer) => resolve(d.toString().trim()))));
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(readFileSync(`/proc/${pid}/stat`, 'utf8')).toMatch(/\) Z /);
      expect(processIsGone(pid, null, 'boot')).toBe(true);
      expect(processIsGone(outer.pid!, null, 'boot')).toBe(false);
      expect(processIsGone(process.pid, 'boot', 'boot')).toBe(false);
      expect(processIsGone(process.pid, 'other-boot', 'boot')).toBe(true);
      expect(processIsGone(GONE_PID, null, 'boot')).toBe(true);
    } finally {
      outer.kill('SIGKILL');
    }
  });

  it('removes a dead command\'s and a dead self-test\'s domains and folders, and nothing else', async () => {
    ({ connection } = await openTestRoot());
    const bootId = await readBootId();
    const work = mkdtempSync(path.join(tmpdir(), 'novalet-sweep-'));
    const instances = path.join(work, 'run/instances');
    const deadCommand = await domainOwnedBy(connection, { kind: 'command', pid: GONE_PID, bootId }, work);
    const otherBoot = await domainOwnedBy(connection, { kind: 'self-test', pid: process.pid, bootId: 'another-boot' }, work);
    const service = await domainOwnedBy(connection, { kind: 'service', pid: GONE_PID, bootId }, work);
    const liveCommand = await domainOwnedBy(connection, { kind: 'command', pid: process.pid, bootId }, work);
    const foreign = await domainOwnedBy(connection, null, work);
    // Not named as novalet names its domains: not novalet's, whatever its metadata says.
    const misnamed = await domainOwnedBy(connection, { kind: 'command', pid: GONE_PID, bootId }, work, `other-${testDomainName('leftovers')}`);
    for (const domain of [deadCommand, liveCommand, service]) mkdirSync(path.join(instances, domain.uuid), { recursive: true });
    mkdirSync(path.join(work, `kvm-self-test-${GONE_PID}-abcdef`));
    mkdirSync(path.join(work, `kvm-self-test-${process.pid}-abcdef`));

    const swept = await sweepLeftovers({ connection, bootId, commandInstancesPath: instances, stateDir: work });

    expect(swept.domains.sort()).toEqual([deadCommand.name, otherBoot.name].sort());
    expect(await connection.lookupByUuid(deadCommand.uuid)).toBeNull();
    expect(await connection.lookupByUuid(otherBoot.uuid)).toBeNull();
    for (const kept of [service, liveCommand, foreign, misnamed]) {
      const found = await connection.lookupByUuid(kept.uuid);
      expect(found?.name, `${kept.name} stays`).toBe(kept.name);
      found?.free();
    }
    expect(existsSync(path.join(instances, deadCommand.uuid))).toBe(false);
    expect(existsSync(path.join(instances, liveCommand.uuid))).toBe(true);
    expect(existsSync(path.join(instances, service.uuid))).toBe(true);
    expect(existsSync(path.join(work, `kvm-self-test-${GONE_PID}-abcdef`))).toBe(false);
    expect(existsSync(path.join(work, `kvm-self-test-${process.pid}-abcdef`))).toBe(true);
  });
});
