import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { probeHost } from '../../hypervisor/host/probe.js';
import { judgeKvm } from '../../hypervisor/virt-type/decision.js';
import { emulatorStamp, kvmSelfTest, qemuVersion, readBootId, readRecordedSelfTest, type SelfTestOutcome } from '../../hypervisor/virt-type/self-test.js';
import { TCG_FALLBACK_SENTENCE } from '../../hypervisor/virt-type/kvm-reasons.js';
import { fixtureRoot } from './fixture-hosts.js';

/**
 * The self-test's bookkeeping: once per boot id and QEMU version. The boot
 * itself is exercised against real libvirt and QEMU in the launch tests;
 * here a counter stands in for it so that what is counted is the caching.
 */

function counter(outcome: SelfTestOutcome) {
  const calls: number[] = [];
  return {
    calls,
    boot: async (timeoutMs: number) => {
      calls.push(timeoutMs);
      return outcome;
    },
  };
}

const FAILED: SelfTestOutcome = { passed: false, detail: 'No marker within 5 s', durationMs: 5000 };

describe('KVM self-test cache', () => {
  it('boots once per boot id and QEMU version, and caches the outcome in a file', async () => {
    const cacheFile = path.join(mkdtempSync(path.join(tmpdir(), 'novalet-selftest-')), 'kvm-self-test.json');
    const { calls, boot } = counter(FAILED);
    const first = await kvmSelfTest({ cacheFile, bootId: 'b1', qemuVersion: '7.2', timeoutMs: 5000, boot });
    expect(first).toMatchObject({ passed: false, cached: false, bootId: 'b1', qemuVersion: '7.2', detail: 'No marker within 5 s' });
    const second = await kvmSelfTest({ cacheFile, bootId: 'b1', qemuVersion: '7.2', timeoutMs: 5000, boot });
    expect(second).toMatchObject({ passed: false, cached: true });
    expect(calls).toEqual([5000]);
    await kvmSelfTest({ cacheFile, bootId: 'b2', qemuVersion: '7.2', timeoutMs: 5000, boot });
    await kvmSelfTest({ cacheFile, bootId: 'b2', qemuVersion: '8.0', timeoutMs: 5000, boot });
    expect(calls).toHaveLength(3);
    expect(JSON.parse(readFileSync(cacheFile, 'utf8'))).toMatchObject({ bootId: 'b2', qemuVersion: '8.0', passed: false });
    // Asked again on purpose (novalet validate --self-test), it boots whatever is recorded.
    const again = await kvmSelfTest({ cacheFile, bootId: 'b2', qemuVersion: '8.0', timeoutMs: 5000, boot, again: true });
    expect(again).toMatchObject({ cached: false });
    expect(calls).toHaveLength(4);
  });

  it('a self-test that could not run (QEMU or libvirt failed, not KVM) is returned as such and never recorded', async () => {
    const cacheFile = path.join(mkdtempSync(path.join(tmpdir(), 'novalet-selftest-')), 'kvm-self-test.json');
    let boots = 0;
    const boot = async () => {
      boots += 1;
      return { notRun: 'QEMU did not start under TCG either' };
    };
    expect(await kvmSelfTest({ cacheFile, bootId: 'b1', qemuVersion: '7.2', timeoutMs: 5000, boot })).toEqual({ notRun: 'QEMU did not start under TCG either' });
    expect(existsSync(cacheFile)).toBe(false);
    await kvmSelfTest({ cacheFile, bootId: 'b1', qemuVersion: '7.2', timeoutMs: 5000, boot });
    expect(boots).toBe(2);
  });

  it('a recorded result names its emulator binary: while that is unchanged, QEMU is not asked its version again', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'novalet-selftest-stamp-'));
    const cacheFile = path.join(dir, 'kvm-self-test.json');
    // A stand-in emulator that counts how often it is asked its version.
    const emulator = path.join(dir, 'qemu-system-x86_64');
    const asked = path.join(dir, 'asked');
    writeFileSync(emulator, `#!/bin/sh\necho x >> ${asked}\necho 'QEMU emulator version 9.1.0 (test)'\n`, { mode: 0o755 });
    const boot = async () => FAILED;
    await kvmSelfTest({ cacheFile, bootId: 'b1', qemuVersion: '9.1.0 (test)', emulatorStamp: await emulatorStamp(emulator), timeoutMs: 5000, boot });
    expect(await readRecordedSelfTest(cacheFile, 'b1', emulator)).toMatchObject({ passed: false, cached: true });
    expect(existsSync(asked)).toBe(false);
    expect(await readRecordedSelfTest(cacheFile, 'b2', emulator)).toBeNull();
    // Upgraded (rewritten): asked again, and the same version still matches.
    writeFileSync(emulator, `#!/bin/sh\necho x >> ${asked}\necho 'QEMU emulator version 9.1.0 (test)'\n\n`, { mode: 0o755 });
    expect(await readRecordedSelfTest(cacheFile, 'b1', emulator)).toMatchObject({ cached: true });
    expect(readFileSync(asked, 'utf8')).toBe('x\n');
    writeFileSync(emulator, `#!/bin/sh\necho 'QEMU emulator version 10.0.0'\n`, { mode: 0o755 });
    expect(await readRecordedSelfTest(cacheFile, 'b1', emulator)).toBeNull();
  });

  it('reads this machine\'s boot id and QEMU version', async () => {
    expect(await readBootId()).toMatch(/^[0-9a-f-]{36}$/);
    expect(await qemuVersion('/usr/bin/qemu-system-x86_64')).toMatch(/^\d+\.\d+/);
  });

  it('a failed self-test makes KVM unusable with its own reason; a passed one changes nothing', async () => {
    const probe = await probeHost({ root: fixtureRoot('intel-kvm-nested'), arch: 'x86_64' });
    const usable = judgeKvm({ probe, selfTest: null });
    expect(usable).toEqual({ usable: true, reasons: [] });
    const judged = judgeKvm({ probe, selfTest: FAILED });
    expect(judged.usable).toBe(false);
    expect(judged.reasons).toHaveLength(1);
    expect(judged.reasons[0]?.code).toBe('KVM_SELFTEST_FAILED');
    expect(judged.reasons[0]?.message).toBe(
      'A test guest booted under KVM did not reach user space: No marker within 5 s; KVM does not really run guests here, whatever /dev/kvm answers.',
    );
    expect(judged.reasons[0]?.remedy.endsWith(TCG_FALLBACK_SENTENCE)).toBe(true);
    expect(judgeKvm({ probe, selfTest: { ...FAILED, passed: true } })).toEqual(usable);
  });
});
