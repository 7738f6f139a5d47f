import { NovaletError } from '../../config/novalet-error.js';
import type { NovaletConfig } from '../../config/novalet-config.js';
import { assembleComputeHost, knownHost, type ComputeHost, type KnownHost } from '../compute-host.js';
import { GuestCpuError } from '../cpu/guest-choice.js';
import { LibvirtError } from '../libvirt/error.js';
import { decideVirtType } from '../virt-type/decision.js';
import { asKvmFault } from '../virt-type/kvm-fault.js';
import { validateHost, type GuestCpuFinding, type ValidationReport } from './host-checks.js';

/**
 * `novalet validate` on this host: the probe, this boot's self-test (or a
 * new one, with `selfTest`), and the guest CPU as libvirt's domain
 * capabilities judge it — libvirt caches them, so on a warm root this costs
 * tens of milliseconds. Where libvirt cannot be asked, the CPU options are
 * "not checked", never passed.
 */
export async function validateThisHost(
  config: NovaletConfig,
  options: { selfTest: boolean; progress?: (what: string) => void; signal?: AbortSignal },
): Promise<ValidationReport> {
  let host: ComputeHost | null = null;
  try {
    host = await assembleComputeHost({
      config,
      purpose: 'command',
      selfTest: options.selfTest ? 'again' : 'recorded',
      ...(options.progress ? { progress: options.progress } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
    });
  } catch (err) {
    options.signal?.throwIfAborted();
    if (!(err instanceof NovaletError)) throw err;
    const known = await knownHost(config);
    const why = `libvirt cannot be asked: ${err.message}`;
    return validateHost({
      ...known,
      config,
      selfTestMissing: options.selfTest && known.selfTestPending ? `the self-test could not be run, because ${why}` : known.selfTestMissing,
      guestCpu: { kind: 'not-checked', why },
    });
  }
  try {
    return validateHost({ ...host, guestCpu: await guestCpuFinding(host) });
  } finally {
    await host.close();
  }
}

async function guestCpuFinding(host: ComputeHost & KnownHost): Promise<GuestCpuFinding> {
  const decision = decideVirtType({ libvirt: host.config.libvirt, verdict: host.verdict, hostArch: host.probe.arch });
  if (decision.effective === null) return { kind: 'not-checked', why: 'no virt type can run instances here (see Configured virt_type)' };
  try {
    const choice = await host.driver.guestCpu(decision.effective, decision.fellBack);
    return { kind: 'given', setting: choice.setting, substitution: choice.substitution };
  } catch (err) {
    const fault = asKvmFault(err, decision.effective, host.verdict);
    if (fault instanceof GuestCpuError || (fault instanceof NovaletError && fault.code === 'KVM_UNAVAILABLE')) return { kind: 'refused', message: fault.message };
    if (fault instanceof LibvirtError) return { kind: 'not-checked', why: `libvirt could not say: ${fault.message}` };
    if (fault instanceof NovaletError) return { kind: 'not-checked', why: fault.message };
    throw fault;
  }
}
