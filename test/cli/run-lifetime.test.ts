/**
 * The lifetime `novalet run` (and every command that starts something) holds
 * (cli/command-lifetime.ts): its time limit ends it as a signal would, with
 * exit 124; the signals it takes can be chosen. Signals are emitted to the
 * listeners, not sent, so that the test worker itself is never at risk.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Interrupted } from '../../config/interrupted.js';
import { CommandLifetime, TimedOut } from '../../cli/command-lifetime.js';

const open: CommandLifetime[] = [];
afterEach(() => {
  for (const lifetime of open.splice(0)) lifetime.close();
});

function lifetime(options?: ConstructorParameters<typeof CommandLifetime>[0]): CommandLifetime {
  const made = new CommandLifetime(options);
  open.push(made);
  return made;
}

const aborted = (signal: AbortSignal): Promise<unknown> => new Promise((resolve) => signal.addEventListener('abort', () => resolve(signal.reason), { once: true }));

describe('CommandLifetime', () => {
  it('its limit ends it as a signal would: a TimedOut reason, exit 124, the words run prints', async () => {
    const run = lifetime();
    run.limit(0.05);
    const reason = await aborted(run.signal);
    expect(reason).toBeInstanceOf(TimedOut);
    expect(run.ended).toBe(reason);
    expect(run.interrupted).toBeNull();
    expect((reason as TimedOut).exitStatus).toBe(124);
    expect((reason as TimedOut).message).toBe('--timeout 0.05 s reached');
  });

  it('the first ending wins: a signal before the limit stays the reason', async () => {
    const run = lifetime();
    run.limit(0.05);
    process.emit('SIGTERM', 'SIGTERM');
    expect(run.ended).toBeInstanceOf(Interrupted);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(run.ended).toBeInstanceOf(Interrupted);
    expect(run.ended?.exitStatus).toBe(143);
  });

  it('closed, its limit never fires', async () => {
    const run = lifetime();
    run.limit(0.05);
    run.close();
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(run.signal.aborted).toBe(false);
  });

  it('takes SIGINT, SIGTERM and SIGHUP by default; a service can leave SIGHUP to its reload', () => {
    const command = lifetime();
    const service = lifetime({ signals: ['SIGINT', 'SIGTERM'] });
    process.emit('SIGHUP', 'SIGHUP');
    expect(command.interrupted?.signal).toBe('SIGHUP');
    expect(service.signal.aborted).toBe(false);
    process.emit('SIGTERM', 'SIGTERM');
    expect(service.interrupted?.signal).toBe('SIGTERM');
  });
});
