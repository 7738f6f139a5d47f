/**
 * What the compute service's HTTP API says of the host: `/v1/host` (the
 * probe, the verdict, the effective virt type and why, the self-test, the
 * capabilities as the next full report carries them) and `/healthz`:
 * unavailable while it is not consuming or libvirt does not answer;
 * degraded (still serving) with an unreadable record moved aside or a full
 * disk; ok otherwise.
 */
import type { ComputeHost } from '../hypervisor/compute-host.js';
import type { Broker } from '../messaging/broker.js';
import type { HealthState } from '../service/http-server.js';
import type { ComputeService } from './compute-service.js';

/** libvirt has this long to answer a health check. */
const LIBVIRT_HEALTH_TIMEOUT_MS = 2000;

export async function computeHostView(
  service: ComputeService,
  host: ComputeHost,
  judged: { effective: 'kvm' | 'qemu' | null; reason: string },
): Promise<Record<string, unknown>> {
  return {
    host: service.host,
    probe: host.probe,
    kvm: host.verdict,
    self_test: host.selfTest,
    self_test_missing: host.selfTestMissing,
    effective_virt_type: judged.effective,
    virt_type_reason: judged.reason,
    capabilities: await service.reportNow(),
    unrecorded_domains: service.unrecorded,
  };
}

export async function serviceHealth(service: ComputeService, broker: Broker, host: ComputeHost): Promise<HealthState> {
  if (broker.state !== 'connected') {
    return { status: 'unavailable', reasons: [`not consuming compute.${service.host}: the broker is ${broker.state === 'closed' ? 'closed' : `unreachable (trying ${broker.address ?? 'the transport_url hosts'})`}`] };
  }
  if (!service.consuming) return { status: 'unavailable', reasons: [`not consuming compute.${service.host} (starting or stopping)`] };
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      host.connection.getLibVersionNumber(),
      new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`no answer in ${LIBVIRT_HEALTH_TIMEOUT_MS} ms`)), LIBVIRT_HEALTH_TIMEOUT_MS))),
    ]);
  } catch (err) {
    return { status: 'unavailable', reasons: [`libvirt does not answer: ${(err as Error).message}`] };
  } finally {
    clearTimeout(timer);
  }
  const degraded = service.degradedReasons();
  return degraded.length > 0 ? { status: 'degraded', reasons: degraded } : { status: 'ok', reasons: [] };
}
