import { NovaletError } from '../../config/novalet-error.js';
import type { NovaletConfig } from '../../config/novalet-config.js';
import { GuestCpuError } from '../cpu/guest-choice.js';
import type { LibvirtDriver } from '../instance/libvirt-driver.js';
import { LibvirtError } from '../libvirt/error.js';
import type { KnownHost } from '../virt-type/known-host.js';
import { asKvmFault } from '../virt-type/kvm-fault.js';
import { validateHost, type GuestCpuFinding, type ValidationReport } from './host-checks.js';

/**
 * `novalet validate` on this host: the probe, this boot's self-test (or a
 * new one), and the guest CPU as libvirt's domain capabilities judge it —
 * libvirt caches them, so on a warm root this costs tens of milliseconds.
 * Where libvirt cannot be asked, the CPU options are "not checked", never
 * passed. The caller assembles the host (cli/validate.ts, through
 * compute-host.ts) and hands it in.
 */

/** A host as the assembly gives it, with libvirt to ask. */
export interface ValidatedHost extends KnownHost {
  config: NovaletConfig;
  driver: Pick<LibvirtDriver, 'guestCpu'>;
}

export async function validateAssembledHost(host: ValidatedHost): Promise<ValidationReport> {
  return validateHost({ ...host, guestCpu: await guestCpuFinding(host) });
}

/**
 * The report where libvirt could not be asked (`error` says why): what is
 * known without it. `selfTestAsked`: --self-test, which then could not run.
 */
export function validateWithoutLibvirt(known: KnownHost, config: NovaletConfig, error: NovaletError, selfTestAsked: boolean): ValidationReport {
  const why = `libvirt cannot be asked: ${error.message}`;
  return validateHost({
    ...known,
    config,
    selfTestMissing: selfTestAsked && known.selfTestPending ? `the self-test could not be run, because ${why}` : known.selfTestMissing,
    guestCpu: { kind: 'not-checked', why },
  });
}

async function guestCpuFinding(host: ValidatedHost): Promise<GuestCpuFinding> {
  const decision = host.virtType;
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
