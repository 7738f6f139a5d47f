/**
 * Every cpu_mode against two hosts whose usable models differ: this build
 * machine's TCG (recorded domain capabilities) and a KVM host (EPYC-Rome,
 * from libvirt's own test data), with the fallback from KVM to TCG.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseConfigText } from '../../config/load-config.js';
import { checkConfiguredCpuNames, chooseGuestCpu, GuestCpuError, usableModels, type GuestCpuChoiceInput } from '../../hypervisor/cpu/guest-choice.js';
import { parseDomainCapabilities } from '../../hypervisor/libvirt/domain-capabilities.js';

const fixture = (name: string) => parseDomainCapabilities(readFileSync(path.join(import.meta.dirname, '../fixtures/cpus', name), 'utf8'));
const TCG = fixture('tcg-debian12-domain-capabilities.xml');
const KVM = fixture('kvm-epyc-rome-domain-capabilities.xml');

const libvirt = (lines: string) => parseConfigText(`[libvirt]\n${lines}\n`, 'nova.conf').values.libvirt;

/** KVM configured and usable; TCG configured; KVM configured but fallen back to TCG. */
const onKvm = (lines: string): GuestCpuChoiceInput => ({ libvirt: libvirt(`virt_type = kvm\n${lines}`), virtType: 'kvm', fellBack: false, domainCapabilities: KVM });
const onTcg = (lines: string): GuestCpuChoiceInput => ({ libvirt: libvirt(`virt_type = qemu\n${lines}`), virtType: 'qemu', fellBack: false, domainCapabilities: TCG });
const fellBack = (lines: string): GuestCpuChoiceInput => ({ libvirt: libvirt(`virt_type = kvm\n${lines}`), virtType: 'qemu', fellBack: true, domainCapabilities: TCG });

function refusal(input: GuestCpuChoiceInput): GuestCpuError {
  try {
    chooseGuestCpu(input);
  } catch (err) {
    if (err instanceof GuestCpuError) return err;
    throw err;
  }
  throw new Error('expected the CPU setting to be refused');
}

describe('the fixtures differ where it matters', () => {
  it('EPYC-Rome is usable under that KVM and not under TCG here; core2duo the other way round', () => {
    expect(usableModels(KVM)).toContain('EPYC-Rome');
    expect(usableModels(TCG)).not.toContain('EPYC-Rome');
    expect(usableModels(TCG)).toContain('core2duo');
    expect(usableModels(KVM)).not.toContain('core2duo');
    // Versions are listed once, by their alias.
    expect(usableModels(KVM)).not.toContain('EPYC-Rome-v1');
  });
});

describe('cpu_mode unset: nova’s default, host-model, for kvm and qemu', () => {
  it.each([
    ['KVM', onKvm(''), 'EPYC-Rome'],
    ['TCG', onTcg(''), 'EPYC'],
    ['the TCG fallback', fellBack(''), 'EPYC'],
  ])('under %s: host-model, named after the model libvirt resolves it to', (_name, input, model) => {
    const choice = chooseGuestCpu(input);
    expect(choice.cpu).toEqual({ mode: 'host-model', model: null, features: [] });
    expect(choice.setting).toBe(`cpu_mode = host-model (${model})`);
    expect(choice.substitution).toBeNull();
  });
});

describe('cpu_mode = host-passthrough', () => {
  it('under KVM: passed through', () => {
    const choice = chooseGuestCpu(onKvm('cpu_mode = host-passthrough'));
    expect(choice.cpu?.mode).toBe('host-passthrough');
    expect(choice.substitution).toBeNull();
  });

  it('with virt_type = qemu: refused, with the remedy naming what TCG can do', () => {
    const err = refusal(onTcg('cpu_mode = host-passthrough'));
    expect(err.code).toBe('CPU_MODE_NEEDS_KVM');
    expect(err.message).toContain('[libvirt] cpu_mode = host-passthrough needs KVM');
    expect(err.message).toContain('virt_type = qemu runs every instance under TCG');
    expect(err.message).toContain('Set [libvirt] cpu_mode = host-model (here EPYC), or custom with a usable model (');
    expect(err.message).toContain('Westmere');
  });

  it('when TCG is the fallback from an unusable KVM: host-model instead, and it says so', () => {
    const choice = chooseGuestCpu(fellBack('cpu_mode = host-passthrough'));
    expect(choice.cpu).toEqual({ mode: 'host-model', model: null, features: [] });
    expect(choice.setting).toBe('cpu_mode = host-model (EPYC)');
    expect(choice.substitution).toBe(
      '[libvirt] cpu_mode = host-passthrough needs KVM: TCG software emulation cannot pass the host CPU through, and instances fall back to TCG because KVM is not usable; ' +
        'instances get cpu_mode = host-model (EPYC) instead, the CPU TCG software emulation can give here. They get the configured CPU again once KVM is usable.',
    );
  });

  it('keeps the extra flags on the host-model it substitutes', () => {
    const choice = chooseGuestCpu(fellBack('cpu_mode = host-passthrough\ncpu_model_extra_flags = -vme'));
    expect(choice.cpu?.features).toEqual([{ name: 'vme', policy: 'disable' }]);
  });
});

describe('cpu_mode = custom: the first of cpu_models usable here', () => {
  it('the first when it is usable, with libvirt’s spelling of a name nova matches case-insensitively', () => {
    const choice = chooseGuestCpu(onKvm('cpu_mode = custom\ncpu_models = epyc-rome, Westmere'));
    expect(choice.cpu).toEqual({ mode: 'custom', model: 'EPYC-Rome', features: [] });
    expect(choice.substitution).toBeNull();
  });

  it('the same configuration under the TCG fallback: the next usable one, and why', () => {
    const choice = chooseGuestCpu(fellBack('cpu_mode = custom\ncpu_models = EPYC-Rome, Westmere'));
    expect(choice.cpu?.model).toBe('Westmere');
    expect(choice.setting).toBe('cpu_mode = custom, model Westmere');
    expect(choice.substitution).toBe(
      '[libvirt] cpu_models = EPYC-Rome, Westmere: EPYC-Rome is not usable under TCG software emulation here, to which instances fall back because KVM is not usable; instances get Westmere, the first usable one.',
    );
  });

  it('names only the models passed over, not unusable ones listed after the chosen one', () => {
    const choice = chooseGuestCpu(onKvm('cpu_mode = custom\ncpu_models = Haswell, Broadwell, Westmere, Skylake-Client'));
    expect(choice.cpu?.model).toBe('Westmere');
    expect(choice.substitution).toMatch(/^\[libvirt\] cpu_models = Haswell, Broadwell, Westmere, Skylake-Client: Haswell \(it lacks [^)]*\); Broadwell \(it lacks [^)]*\) are not usable under KVM here; instances get Westmere, the first usable one\.$/);
  });

  it('skipping an unusable model under KVM names what it lacks (libvirt’s blockers)', () => {
    const choice = chooseGuestCpu(onKvm('cpu_mode = custom\ncpu_models = Haswell, Westmere'));
    expect(choice.cpu?.model).toBe('Westmere');
    expect(choice.substitution).toContain('Haswell (it lacks erms, hle, invpcid, pcid, rtm) is not usable under KVM here; instances get Westmere');
  });

  it('none usable under a KVM that offers only older CPUs: refused, naming the usable ones', () => {
    const err = refusal(onKvm('cpu_mode = custom\ncpu_models = Haswell, Skylake-Client'));
    expect(err.code).toBe('CPU_MODEL_UNUSABLE');
    expect(err.message).toContain('[libvirt] cpu_models = Haswell, Skylake-Client: none is usable under KVM here (Haswell (it lacks erms, hle, invpcid, pcid, rtm); Skylake-Client (it lacks');
    expect(err.message).toContain('The usable models are: 486, Conroe, EPYC, EPYC-Rome, Westmere, qemu64.');
    expect(err.message).toContain('Put one of them in [libvirt] cpu_models');
  });

  it('none usable under TCG chosen outright: refused, naming the usable ones', () => {
    const err = refusal(onTcg('cpu_mode = custom\ncpu_models = Haswell'));
    expect(err.code).toBe('CPU_MODEL_UNUSABLE');
    expect(err.message).toContain('none is usable under TCG software emulation here (Haswell)');
    for (const model of ['Nehalem', 'Westmere', 'qemu64']) expect(err.message).toMatch(new RegExp(`The usable models are: [^.]*\\b${model}\\b`));
  });

  it('none usable under the TCG fallback: host-model instead, and why', () => {
    const choice = chooseGuestCpu(fellBack('cpu_mode = custom\ncpu_models = Haswell\ncpu_model_extra_flags = +aes'));
    expect(choice.cpu).toEqual({ mode: 'host-model', model: null, features: [{ name: 'aes', policy: 'require' }] });
    expect(choice.substitution).toMatch(/^\[libvirt\] cpu_models = Haswell: none is usable under TCG software emulation here \(Haswell\), to which instances fall back because KVM is not usable; instances get cpu_mode = host-model \(EPYC\) instead/);
  });

  it('a model libvirt does not know: refused, naming the ones it does and the close ones', () => {
    const err = refusal(onKvm('cpu_mode = custom\ncpu_models = Skylake'));
    expect(err.code).toBe('CPU_MODEL_UNKNOWN');
    expect(err.message).toContain("'Skylake' is not a CPU model libvirt knows for x86_64 with /usr/bin/qemu-system-x86_64. The models are: 486, Broadwell, Conroe, EPYC, EPYC-Rome, Haswell, Skylake-Client, Westmere, core2duo, qemu64.");
    expect(err.message).toContain('Did you mean Skylake-Client?');
  });

  it('extra flags become features with libvirt’s policies on the chosen model', () => {
    const choice = chooseGuestCpu(onTcg('cpu_mode = custom\ncpu_models = Nehalem\ncpu_model_extra_flags = +aes, -popcnt, PCLMULDQ'));
    expect(choice.cpu).toEqual({
      mode: 'custom',
      model: 'Nehalem',
      features: [
        { name: 'aes', policy: 'require' },
        { name: 'popcnt', policy: 'disable' },
        { name: 'pclmuldq', policy: 'require' },
      ],
    });
  });
});

describe('cpu_mode = none', () => {
  it('leaves the CPU to libvirt and QEMU, under either virt type', () => {
    for (const input of [onKvm('cpu_mode = none'), onTcg('cpu_mode = none'), fellBack('cpu_mode = none')]) {
      const choice = chooseGuestCpu(input);
      expect(choice.cpu).toBeNull();
      expect(choice.substitution).toBeNull();
    }
  });

  it('says that extra flags are ignored with it, which nova does silently', () => {
    const choice = chooseGuestCpu(onTcg('cpu_mode = none\ncpu_model_extra_flags = +aes'));
    expect(choice.cpu).toBeNull();
    expect(choice.substitution).toBe('[libvirt] cpu_model_extra_flags = +aes is ignored with cpu_mode = none, which leaves the CPU to the hypervisor (as nova does); set cpu_mode = host-model or custom to use them.');
  });
});

describe('cpu_model_extra_flags names', () => {
  it('a name libvirt does not know is refused, with its spelling when it is only spelled differently', () => {
    const err = refusal(onTcg('cpu_mode = host-model\ncpu_model_extra_flags = +sse4_2'));
    expect(err.code).toBe('CPU_FLAG_UNKNOWN');
    expect(err.message).toBe("[libvirt] cpu_model_extra_flags: '+sse4_2' is not a CPU feature libvirt knows for x86_64 (its cpu_map). Did you mean '+sse4.2'? libvirt spells it sse4.2.");
    const other = refusal(onKvm('cpu_mode = host-passthrough\ncpu_model_extra_flags = -warp-drive'));
    expect(other.message).toContain("'-warp-drive' is not a CPU feature libvirt knows for x86_64 (its cpu_map). Use libvirt's names");
  });
});

describe("the configured CPU names against libvirt's cpu_map, at configuration load", () => {
  const known = { models: ['Skylake-Client', 'Skylake-Client-IBRS', 'Nehalem'], features: new Set(['sse4.2', 'pcid']) };
  const check = (lines: string, arch = 'x86_64') => () => checkConfiguredCpuNames(parseConfigText(`[libvirt]\n${lines}\n`, 'nova.conf'), arch, known);

  it('an unknown model or flag: file, line and a "did you mean"', () => {
    expect(check('cpu_mode = custom\ncpu_models = Nehalem, Skylake-Clientt')).toThrow(
      new GuestCpuError('CPU_MODEL_UNKNOWN', "nova.conf:3: [libvirt] cpu_models = Nehalem, Skylake-Clientt: 'Skylake-Clientt' is not a CPU model libvirt knows for x86_64 (its cpu_map).", 'Did you mean Skylake-Client?'),
    );
    expect(check('cpu_model_extra_flags = -SSE4_2')).toThrow("nova.conf:2: [libvirt] cpu_model_extra_flags: '-sse4_2' is not a CPU feature libvirt knows for x86_64 (its cpu_map). Did you mean '-sse4.2'?");
  });

  it('known names pass, models without regard to case as nova matches them; flags are not checked where cpu_mode = none ignores them, nor off x86', () => {
    expect(check('cpu_mode = custom\ncpu_models = skylake-client\ncpu_model_extra_flags = +PCID')).not.toThrow();
    expect(check('cpu_mode = none\ncpu_model_extra_flags = warp')).not.toThrow();
    expect(check('cpu_mode = custom\ncpu_models = cortex-a57', 'aarch64')).not.toThrow();
  });
});
