/** LibvirtError's words and numbers, and the open failures novalet names itself; no libvirt needed. */
import { describe, expect, it } from 'vitest';
import { libvirtErrorCode, libvirtErrorDomainName, libvirtErrorName } from '../../hypervisor/libvirt/error-names.js';
import { callIsAboutDomain, LibvirtError, type LibvirtErrorRecord } from '../../hypervisor/libvirt/error.js';
import { explainOpenFailure } from '../../hypervisor/libvirt/open-failure.js';

function record(code: number, domain: number, message: string): LibvirtErrorRecord {
  return { code, domain, level: 2, message, str1: null, str2: null, str3: null, int1: -1, int2: -1 };
}

describe("libvirt's error names", () => {
  it('name error numbers and domains as virterror.h does', () => {
    expect(libvirtErrorName(0)).toBe('VIR_ERR_OK');
    expect(libvirtErrorName(27)).toBe('VIR_ERR_XML_ERROR');
    expect(libvirtErrorName(42)).toBe('VIR_ERR_NO_DOMAIN');
    expect(libvirtErrorName(55)).toBe('VIR_ERR_OPERATION_INVALID');
    expect(libvirtErrorName(67)).toBe('VIR_ERR_CONFIG_UNSUPPORTED');
    expect(libvirtErrorName(80)).toBe('VIR_ERR_NO_DOMAIN_METADATA');
    expect(libvirtErrorName(91)).toBe('VIR_ERR_CPU_INCOMPATIBLE');
    expect(libvirtErrorName(110)).toBe('VIR_ERR_MULTIPLE_DOMAINS');
    expect(libvirtErrorName(999)).toBe('VIR_ERR_UNKNOWN_999');
    expect(libvirtErrorDomainName(10)).toBe('VIR_FROM_QEMU');
    expect(libvirtErrorDomainName(20)).toBe('VIR_FROM_DOMAIN');
    expect(libvirtErrorDomainName(72)).toBe('VIR_FROM_CH');
    expect(libvirtErrorDomainName(500)).toBe('VIR_FROM_UNKNOWN_500');
    expect(libvirtErrorCode('VIR_ERR_NO_DOMAIN')).toBe(42);
    expect(() => libvirtErrorCode('VIR_ERR_NOPE')).toThrow(RangeError);
  });
});

describe('LibvirtError', () => {
  it("reads as a sentence: what novalet asked, libvirt's words, the code name, the remedy", () => {
    const error = new LibvirtError('start domain web-1 (u-1)', record(55, 10, 'Requested operation is not valid: domain is already running'));
    expect(error).toBeInstanceOf(Error);
    expect(error.name).toBe('LibvirtError');
    expect(error.code).toBe('LIBVIRT_ERROR');
    expect(error.message).toBe(
      'libvirt could not start domain web-1 (u-1): Requested operation is not valid: domain is already running (VIR_ERR_OPERATION_INVALID). ' +
        "The domain's current state does not allow this operation; read its state and retry when it fits (start a shut-off domain, stop a running one).",
    );
    expect(error).toMatchObject({
      libvirtCode: 55,
      libvirtCodeName: 'VIR_ERR_OPERATION_INVALID',
      libvirtDomain: 10,
      libvirtDomainName: 'VIR_FROM_QEMU',
      libvirtMessage: 'Requested operation is not valid: domain is already running',
      operation: 'start domain web-1 (u-1)',
    });
  });

  it("keeps libvirt's multi-line XML message as is, and puts it on one line in the message without the caret line", () => {
    const words = "(domain_definition):1: Couldn't find end of Start Tag domain line 1\n<domain\n-------^";
    const error = new LibvirtError('define the domain', record(35, 20, words));
    expect(error.libvirtMessage).toBe(words);
    expect(error.message).toBe(
      "libvirt could not define the domain: (domain_definition):1: Couldn't find end of Start Tag domain line 1 <domain (VIR_ERR_XML_DETAIL). " +
        'Fix the XML document at the place the message points to.',
    );
  });

  it('has no remedy for a code without a general answer, and still ends with a full stop', () => {
    const error = new LibvirtError('list the domains', record(82, 0, 'integer overflow'));
    expect(error.remedy).toBeUndefined();
    expect(error.message).toBe('libvirt could not list the domains: integer overflow (VIR_ERR_OVERFLOW).');
  });

  it('without a recorded error says the cause is unknown', () => {
    const error = new LibvirtError('close the connection', null);
    expect(error.libvirtCodeName).toBe('VIR_ERR_INTERNAL_ERROR');
    expect(error.message).toMatch(/^libvirt could not close the connection: libvirt reported a failure but no error \(the cause is unknown\) \(VIR_ERR_INTERNAL_ERROR\)\./);
  });
});

describe('explainOpenFailure', () => {
  const root = '/var/lib/novalet/libvirt';
  const uri = `qemu:///embed?root=${root}`;

  it('a root another process holds: EMBEDDED_ROOT_BUSY naming the root and the lock file', () => {
    const error = explainOpenFailure(
      uri,
      new LibvirtError(`open a connection to ${uri}`, record(38, 0, `Failed to acquire pid file '${root}/run/qemu/driver.pid': Resource temporarily unavailable`)),
    );
    expect(error.code).toBe('EMBEDDED_ROOT_BUSY');
    expect(error.libvirtCodeName).toBe('VIR_ERR_SYSTEM_ERROR');
    // No driver.pid to read here: the holder is not named by pid.
    expect(error.message).toBe(
      `The embedded libvirt root ${root} is in use by another process: libvirt lets one process at a time hold it (${root}/run/qemu/driver.pid is locked; ` +
        `libvirt said: Failed to acquire pid file '${root}/run/qemu/driver.pid': Resource temporarily unavailable). ` +
        'Stop the other novalet compute (or virsh) using this root, or give this one its own root directory ([DEFAULT] state_path or the embedded URI). ' +
        'libvirt does not start its embedded driver twice in one process: start this process again once the root is free.',
    );
  });

  it('a second root in one process: EMBEDDED_ROOT_CONFLICT naming both', () => {
    const error = explainOpenFailure(
      uri,
      new LibvirtError(
        `open a connection to ${uri}`,
        record(1, 0, `internal error: Cannot open embedded driver at path '${root}', already open with path '/srv/other'`),
      ),
    );
    expect(error.code).toBe('EMBEDDED_ROOT_CONFLICT');
    expect(error.message).toMatch(/^This process already embeds libvirt's QEMU driver at \/srv\/other, so it cannot open \/var\/lib\/novalet\/libvirt too/);
    expect(error.remedy).toBe('Use qemu:///embed?root=/srv/other again in this process, or open /var/lib/novalet/libvirt from another process.');
  });

  it('any other failure is left as libvirt reported it', () => {
    const original = new LibvirtError(`open a connection to ${uri}`, record(8, 45, "invalid argument: Missing URI parameter 'root'"));
    expect(explainOpenFailure(uri, original)).toBe(original);
    expect(explainOpenFailure('test:///default', original)).toBe(original);
  });
});

describe("the domain's log: said only where there is a domain", () => {
  it('a CPU comparison has no domain: the remedy points at libvirt\'s own log', () => {
    const compare = 'int virConnectCompareHypervisorCPU(uintptr_t conn, const char *emulator, const char *arch, const char *machine, const char *virttype, const char *xmlCPU, unsigned int flags)';
    expect(callIsAboutDomain(compare)).toBe(false);
    const error = new LibvirtError('compare a CPU with what the hypervisor provides', record(1, 31, 'internal error: Unknown CPU model FooBar'), { aboutDomain: callIsAboutDomain(compare) });
    expect(error.message).not.toContain("domain's log");
    expect(error.message).toMatch(/libvirt's own log may say more/);
  });

  it('starting a domain: the remedy names its log', () => {
    for (const proto of ['int virDomainCreateWithFlags(uintptr_t domain, unsigned int flags)', 'uintptr_t virDomainCreateXML(uintptr_t conn, const char *xmlDesc, unsigned int flags)']) {
      expect(callIsAboutDomain(proto), proto).toBe(true);
      const error = new LibvirtError('start the domain', record(1, 10, 'internal error: qemu unexpectedly closed the monitor'), { aboutDomain: true });
      expect(error.message).toContain("its own words are in the domain's log");
    }
    expect(callIsAboutDomain('uintptr_t virDomainDefineXML(uintptr_t conn, const char *xml)')).toBe(false);
  });
});
