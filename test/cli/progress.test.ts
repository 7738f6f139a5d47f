import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Logger } from '../../config/logger.js';
import { progressReporter } from '../../cli/progress.js';

/** Long phases are announced as a line for a person on a terminal, as a log line for a collector otherwise. */
describe('progress of long phases', () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it('on a terminal: a plain line naming the command', () => {
    const written: string[] = [];
    vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
      written.push(String(chunk));
      return true;
    });
    const info = vi.fn();
    progressReporter('run', { info } as unknown as Logger, true)('checking that KVM really runs guests');
    expect(written).toEqual(['novalet run: checking that KVM really runs guests …\n']);
    expect(info).not.toHaveBeenCalled();
  });

  it('elsewhere: a structured log line with the command and the phase', () => {
    const write = vi.spyOn(process.stderr, 'write');
    const info = vi.fn();
    progressReporter('validate', { info } as unknown as Logger, false)('libvirt is probing QEMU');
    expect(info).toHaveBeenCalledWith({ command: 'validate', phase: 'libvirt is probing QEMU' }, 'libvirt is probing QEMU');
    expect(write).not.toHaveBeenCalled();
  });
});
