/**
 * A ComputeDriver without a hypervisor, as nova's nova/virt/fake.py: guests
 * are entries in a map, power states change when asked, and the test can
 * make a guest power itself off or crash, or make the next spawn fail. It
 * keeps the interface's promises (test/hypervisor/compute-driver-contract.ts
 * holds it to them, as it holds the libvirt driver), so that the agent's own
 * logic — states, idempotence, recovery, claims — can be tested on it.
 */
import { NovaletError } from '../../config/novalet-error.js';
import type {
  ComputeDriver,
  DriverHostCapabilities,
  DriverInstance,
  InstanceLifecycleEvent,
  LifecycleSubscription,
  PowerState,
  RebootType,
  SpawnedInstance,
  SpawnOptions,
  ValidInstanceSpec,
} from '../../hypervisor/compute-driver.js';

interface FakeGuest {
  spec: ValidInstanceSpec;
  state: PowerState;
  console: string[];
  boots: number;
}

export class FakeComputeDriver implements ComputeDriver {
  readonly #guests = new Map<string, FakeGuest>();
  readonly #listeners = new Set<(event: InstanceLifecycleEvent) => void>();
  #nextSpawnFails: NovaletError | null = null;
  /** Every call, in order, for tests that check what the agent asked. */
  readonly calls: string[] = [];

  constructor(private readonly capabilities: DriverHostCapabilities = FAKE_CAPABILITIES) {}

  /** The next spawn throws this (once), as a hypervisor that refuses a guest would. */
  failNextSpawn(error: NovaletError): void {
    this.#nextSpawnFails = error;
  }

  /** The guest powers itself off (its OS shut down), as libvirt reports it. */
  guestPowersOff(uuid: string): void {
    this.#guest(uuid).state = 'shutdown';
    this.#emit({ uuid, transition: 'stopped', byGuest: true, detail: 'shutdown' });
  }

  /** The guest's QEMU dies, as libvirt reports a crash. */
  guestCrashes(uuid: string): void {
    this.#guest(uuid).state = 'crashed';
    this.#emit({ uuid, transition: 'crashed', byGuest: false, detail: 'crashed' });
  }

  #guest(uuid: string): FakeGuest {
    const guest = this.#guests.get(uuid);
    if (!guest) throw new NovaletError('INSTANCE_NOT_FOUND', `No instance ${uuid} exists on this host.`, 'Check the UUID against the instances this host reports.');
    return guest;
  }

  #emit(event: InstanceLifecycleEvent): void {
    // As the libvirt driver: listeners run on a later turn, never inside the call that caused the event.
    for (const listener of this.#listeners) queueMicrotask(() => listener(event));
  }

  #boot(uuid: string, guest: FakeGuest): void {
    guest.state = 'running';
    guest.boots += 1;
    guest.console.push(`NOVALET-TEST-GUEST-READY name=${guest.spec.name} cpu_model=fake flags=fpu`);
    this.#emit({ uuid, transition: 'started', byGuest: false, detail: 'booted' });
  }

  /** Spawns wait, as a long download would, until `releaseSpawns()`; the spawn's signal ends the wait. */
  holdSpawns(): void {
    this.#held ??= { gate: null, release: () => undefined };
    this.#held.gate = new Promise<void>((resolve) => (this.#held!.release = resolve));
  }

  releaseSpawns(): void {
    this.#held?.release();
    this.#held = null;
  }

  #held: { gate: Promise<void> | null; release: () => void } | null = null;

  /** A guest the driver has without anyone having asked for it (a domain without a record). */
  addGuest(spec: ValidInstanceSpec): void {
    const guest: FakeGuest = { spec, state: 'nostate', console: [], boots: 0 };
    this.#guests.set(spec.uuid, guest);
    this.#boot(spec.uuid, guest);
  }

  // The signal stops a spawn held as a download would be; nothing is left, as a real driver leaves nothing.
  async spawn(spec: ValidInstanceSpec, options: SpawnOptions = {}): Promise<SpawnedInstance> {
    this.calls.push(`spawn ${spec.uuid}`);
    const gate = this.#held?.gate;
    if (gate) {
      const signal = options.signal;
      await new Promise<void>((resolve, reject) => {
        const onAbort = () => reject(new NovaletError('IMAGE_DOWNLOAD_ABORTED', 'The spawn was aborted.', 'Nothing is left.'));
        if (signal?.aborted) return onAbort();
        signal?.addEventListener('abort', onAbort, { once: true });
        void gate.then(() => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        });
      });
    }
    if (this.#guests.has(spec.uuid)) {
      throw new NovaletError('INSTANCE_EXISTS', `An instance ${spec.uuid} already exists on this host.`, 'Delete that instance first, or use another UUID.');
    }
    const failure = this.#nextSpawnFails;
    if (failure) {
      this.#nextSpawnFails = null;
      throw failure;
    }
    const guest: FakeGuest = { spec, state: 'nostate', console: [], boots: 0 };
    this.#guests.set(spec.uuid, guest);
    this.#boot(spec.uuid, guest);
    const virtType = spec.virtType ?? this.capabilities.effective_virt_type ?? 'qemu';
    return {
      uuid: spec.uuid,
      virtType,
      virtTypeReason: virtType === 'kvm' ? 'KVM is usable on this host.' : '[libvirt] virt_type = qemu: TCG software emulation, as configured.',
      image: spec.image ? { sha256: spec.image.checksum?.slice('sha256:'.length) ?? '0'.repeat(64), format: 'qcow2' } : null,
      guestCpu: { setting: 'cpu_mode = host-model', substitution: null },
    };
  }

  async destroy(uuid: string): Promise<void> {
    this.calls.push(`destroy ${uuid}`);
    const guest = this.#guests.get(uuid);
    if (!guest) return;
    this.#guests.delete(uuid);
    if (guest.state === 'running' || guest.state === 'paused') this.#emit({ uuid, transition: 'stopped', byGuest: false, detail: 'destroyed' });
  }

  async reboot(uuid: string, type: RebootType): Promise<void> {
    this.calls.push(`reboot ${type} ${uuid}`);
    const guest = this.#guest(uuid);
    if (type === 'SOFT' && guest.state !== 'running') {
      throw new NovaletError('INSTANCE_NOT_RUNNING', `Instance ${uuid} is not running, so it cannot be rebooted softly.`, 'Start it, or reboot it HARD.');
    }
    this.#boot(uuid, guest);
  }

  async powerOff(uuid: string, timeoutMs: number): Promise<'clean' | 'forced'> {
    this.calls.push(`powerOff ${uuid} ${timeoutMs}`);
    const guest = this.#guest(uuid);
    if (guest.state !== 'running' && guest.state !== 'paused') return 'clean';
    guest.state = 'shutdown';
    this.#emit({ uuid, transition: 'stopped', byGuest: false, detail: timeoutMs > 0 ? 'shutdown' : 'destroyed' });
    return timeoutMs > 0 ? 'clean' : 'forced';
  }

  async powerOn(uuid: string): Promise<void> {
    this.calls.push(`powerOn ${uuid}`);
    const guest = this.#guest(uuid);
    if (guest.state !== 'running') this.#boot(uuid, guest);
  }

  async state(uuid: string): Promise<PowerState> {
    return this.#guest(uuid).state;
  }

  async list(): Promise<DriverInstance[]> {
    return [...this.#guests].map(([uuid, guest]) => ({ uuid, state: guest.state }));
  }

  async consoleOutput(uuid: string, lines: number): Promise<string[]> {
    return lines <= 0 ? [] : this.#guest(uuid).console.slice(-lines);
  }

  async hostCapabilities(): Promise<DriverHostCapabilities> {
    return structuredClone(this.capabilities);
  }

  onLifecycleEvent(listener: (event: InstanceLifecycleEvent) => void): LifecycleSubscription {
    this.#listeners.add(listener);
    return Object.assign(() => void this.#listeners.delete(listener), { ready: Promise.resolve() });
  }
}

/** A small x86_64 host under TCG, KVM unusable, as capability reports carry it. */
export const FAKE_CAPABILITIES: DriverHostCapabilities = {
  hypervisor_type: 'QEMU',
  hypervisor_version: 9_000_000,
  hypervisor_hostname: 'fake-host',
  cpu_info: { arch: 'x86_64', model: 'qemu64', vendor: 'AMD', topology: { cells: 1, sockets: 1, cores: 2, threads: 1 }, features: ['sse2'] },
  supported_instances: [['x86_64', 'qemu', 'hvm']],
  kvm: { usable: false, reasons: [{ code: 'KVM_DEVICE_MISSING', message: '/dev/kvm does not exist.', remedy: 'Load the KVM module.' }] },
  effective_virt_type: 'qemu',
  cpu_models: { qemu: ['qemu64', 'Westmere'] },
  traits: ['HW_CPU_X86_SSE2'],
  cpu: {
    cpu_info: { arch: 'x86_64', model: 'qemu64', vendor: 'AMD', topology: { cells: 1, sockets: 1, cores: 2, threads: 1 }, features: ['sse2'] },
    kvm: { usable: false, reasons: [{ code: 'KVM_DEVICE_MISSING', message: '/dev/kvm does not exist.', remedy: 'Load the KVM module.' }] },
    virt_types: {},
    guest_cpu: {
      virt_type: 'qemu',
      fell_back: true,
      virt_type_reason: 'KVM is not usable on this host.',
      can_run_instances: true,
      setting: 'cpu_mode = host-model',
      substitution: null,
      error: null,
      model: 'qemu64',
      features: ['sse2'],
      traits: ['HW_CPU_X86_SSE2'],
    },
  },
};
