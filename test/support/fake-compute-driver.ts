/**
 * A ComputeDriver without a hypervisor, as nova's nova/virt/fake.py: guests
 * are entries in a map, power states change when asked, and the test can
 * make a guest power itself off or crash, ignore the ACPI power button (as
 * the test guest does with `novalet.ignore_acpi` on its kernel command
 * line, which the fake honours too), hold spawns at a phase, or make the
 * next spawn fail. It
 * keeps the interface's promises (test/hypervisor/compute-driver-contract.ts
 * holds it to them, as it holds the libvirt driver), so that the agent's own
 * logic — states, idempotence, recovery, claims — can be tested on it.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { NovaletError } from '../../config/novalet-error.js';
import type {
  ComputeDriver,
  DriverHostCapabilities,
  DriverInstance,
  InstanceLifecycleEvent,
  LifecycleSubscription,
  PowerState,
  RebootOptions,
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
  /** The ACPI power button does nothing: a SOFT reboot waits its timeout, then ends HARD. */
  ignoresAcpi: boolean;
}

/** The phases of a spawn, as the libvirt driver's: the image download, the definition, the start. */
export type SpawnPhase = 'download' | 'define' | 'create';

interface Held {
  phase: SpawnPhase;
  /** Only this instance's spawns, when set. */
  uuid: string | undefined;
  gate: Promise<void>;
  release: () => void;
}

/** The test guest's kernel command line switch for a guest that ignores the ACPI power button (deploy/test-guest/init). */
export const IGNORE_ACPI = 'novalet.ignore_acpi';

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

  /**
   * Spawns (of `uuid` only, when given) wait at `phase` (the download, as a
   * long one would, by default) until `releaseSpawns()`; the spawn's signal
   * ends the wait, as it ends every phase.
   */
  holdSpawns(phase: SpawnPhase = 'download', uuid?: string): void {
    const held: Held = { phase, uuid, gate: Promise.resolve(), release: () => undefined };
    held.gate = new Promise<void>((resolve) => (held.release = resolve));
    this.#held = held;
  }

  releaseSpawns(): void {
    this.#held?.release();
    this.#held = null;
  }

  /** Settles once a spawn of `uuid` waits at the held phase. */
  spawnHeld(uuid: string): Promise<void> {
    if (this.#waiting.has(uuid)) return Promise.resolve();
    return new Promise((resolve) => this.#heldWaiters.push({ uuid, resolve }));
  }

  #held: Held | null = null;
  readonly #waiting = new Set<string>();
  #heldWaiters: { uuid: string; resolve: () => void }[] = [];

  /** The spawn reaches `phase`: it waits there while spawns are held at it; an abort rejects with the signal's reason. */
  async #phase(phase: SpawnPhase, uuid: string, signal: AbortSignal | undefined): Promise<void> {
    signal?.throwIfAborted();
    const held = this.#held;
    if (held === null || held.phase !== phase || (held.uuid !== undefined && held.uuid !== uuid)) return;
    this.#waiting.add(uuid);
    for (const waiter of this.#heldWaiters.filter((w) => w.uuid === uuid)) waiter.resolve();
    this.#heldWaiters = this.#heldWaiters.filter((w) => w.uuid !== uuid);
    try {
      await new Promise<void>((resolve, reject) => {
        const onAbort = () => reject(signal!.reason);
        if (signal?.aborted) return onAbort();
        signal?.addEventListener('abort', onAbort, { once: true });
        void held.gate.then(() => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        });
      });
    } finally {
      this.#waiting.delete(uuid);
    }
  }

  /** A guest the driver has without anyone having asked for it (a domain without a record). */
  addGuest(spec: ValidInstanceSpec): void {
    this.#guests.set(spec.uuid, newGuest(spec));
    this.#boot(spec.uuid, this.#guest(spec.uuid));
  }

  /** The guest ignores (or again obeys) the ACPI power button from now on. */
  guestIgnoresAcpi(uuid: string, ignores = true): void {
    this.#guest(uuid).ignoresAcpi = ignores;
  }

  // The signal stops a spawn at every phase; nothing is left, as the libvirt driver leaves nothing.
  async spawn(spec: ValidInstanceSpec, options: SpawnOptions = {}): Promise<SpawnedInstance> {
    this.calls.push(`spawn ${spec.uuid}`);
    const { signal } = options;
    signal?.throwIfAborted();
    if (this.#guests.has(spec.uuid)) {
      throw new NovaletError('INSTANCE_EXISTS', `An instance ${spec.uuid} already exists on this host.`, 'Delete that instance first, or use another UUID.');
    }
    await this.#phase('download', spec.uuid, signal);
    const failure = this.#nextSpawnFails;
    if (failure) {
      this.#nextSpawnFails = null;
      throw failure;
    }
    // Defined, not yet started: what an abort from here on removes.
    const guest = newGuest(spec);
    guest.state = 'shutdown';
    this.#guests.set(spec.uuid, guest);
    try {
      await this.#phase('define', spec.uuid, signal);
      await this.#phase('create', spec.uuid, signal);
    } catch (err) {
      this.#guests.delete(spec.uuid);
      throw err;
    }
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

  /**
   * As the libvirt driver: SOFT asks the guest, which powers off and is
   * started again — unless it ignores ACPI: then, after `softTimeoutMs` (0
   * by default here, the configured wait in the libvirt driver), HARD.
   */
  async reboot(uuid: string, type: RebootType, options: RebootOptions = {}): Promise<RebootType> {
    this.calls.push(`reboot ${type} ${uuid}`);
    const guest = this.#guest(uuid);
    if (type === 'SOFT') {
      if (guest.state !== 'running') {
        throw new NovaletError('INSTANCE_NOT_RUNNING', `Instance ${uuid} is not running, so it cannot be rebooted softly.`, 'Start it, or reboot it HARD.');
      }
      if (!guest.ignoresAcpi) {
        guest.console.push('NOVALET-TEST-GUEST-POWEROFF');
        guest.state = 'shutdown';
        this.#emit({ uuid, transition: 'stopped', byGuest: true, detail: 'shutdown' });
        this.#boot(uuid, guest);
        return 'SOFT';
      }
      guest.console.push('NOVALET-TEST-GUEST-ACPI-IGNORED');
      await sleep(options.softTimeoutMs ?? 0, undefined, options.signal ? { signal: options.signal } : {}).catch(() => options.signal?.throwIfAborted());
      // Deleted meanwhile: nothing to reboot.
      if (this.#guests.get(uuid) !== guest) this.#guest(uuid);
    }
    if (guest.state === 'running' || guest.state === 'paused') this.#emit({ uuid, transition: 'stopped', byGuest: false, detail: 'destroyed' });
    this.#boot(uuid, guest);
    return 'HARD';
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

function newGuest(spec: ValidInstanceSpec): FakeGuest {
  return { spec, state: 'nostate', console: [], boots: 0, ignoresAcpi: (spec.cmdline ?? '').split(/\s+/).includes(IGNORE_ACPI) };
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
