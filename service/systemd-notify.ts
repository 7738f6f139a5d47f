/**
 * sd_notify(3) for a novalet service under systemd (Type=notify,
 * deploy/novalet-compute.service): READY=1 once the service consumes its
 * queue, STATUS= lines, STOPPING=1, and WATCHDOG=1 pings when the unit asks
 * for them. Node has no AF_UNIX datagram sockets, so the datagrams are sent
 * by libsystemd's sd_notify through koffi.
 *
 * Without NOTIFY_SOCKET (not started by systemd, or by a unit of another
 * type) every call is a no-op and neither koffi nor libsystemd is loaded. If
 * libsystemd cannot be loaded the notifier is a no-op that says why: the
 * service never fails for want of a notification.
 *
 * libsystemd reads NOTIFY_SOCKET from the process's environment and leaves
 * it there (unset_environment 0), so every call reaches the socket; a child
 * that inherits it cannot speak for the service, since the unit's
 * NotifyAccess=main makes systemd take messages from the main process only.
 */
import { createRequire } from 'node:module';
import type * as KoffiModule from 'koffi';
import type { Logger } from '../config/logger.js';

export interface Notifier {
  /** Whether notifications are sent: NOTIFY_SOCKET is set and libsystemd is loaded. */
  readonly enabled: boolean;
  /** Why not, when not enabled. */
  readonly reason: string | null;
  ready(status?: string): void;
  status(text: string): void;
  stopping(status?: string): void;
  /** Starts WATCHDOG=1 pings every WATCHDOG_USEC/2 when systemd asked for them (WATCHDOG_USEC, WATCHDOG_PID = this pid); returns a stop function. */
  startWatchdog(): () => void;
}

export interface NotifierOptions {
  /** Told once per kind of failure (libsystemd not loaded, sd_notify failing), at warn. */
  log?: Logger;
  /** The library to load; the soname of Debian's libsystemd0 unless a test names another. */
  library?: string;
}

export const LIBSYSTEMD = 'libsystemd.so.0';
/** systemd shows STATUS= in `systemctl status`, one line; longer text is cut. */
export const MAX_STATUS_LENGTH = 400;

/**
 * STATUS= text as one line: control characters (line breaks among them,
 * which would start another assignment of the datagram) become spaces.
 */
export function statusLine(text: string): string {
  const line = text.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]+/g, ' ').trim();
  const chars = Array.from(line);
  return chars.length > MAX_STATUS_LENGTH ? `${chars.slice(0, MAX_STATUS_LENGTH - 1).join('')}…` : line;
}

/** The watchdog period systemd asked this process for, in microseconds, or null when it asked for none. */
export function watchdogUsec(env: NodeJS.ProcessEnv, pid = process.pid): number | null {
  const usec = env.WATCHDOG_USEC;
  if (usec === undefined || !/^[0-9]+$/.test(usec) || Number(usec) <= 0) return null;
  // WATCHDOG_PID names the process the unit's watchdog is meant for; a child that inherited it is not that process.
  const forPid = env.WATCHDOG_PID;
  if (forPid !== undefined && forPid !== String(pid)) return null;
  return Number(usec);
}

function disabled(reason: string): Notifier {
  return {
    enabled: false,
    reason,
    ready: () => undefined,
    status: () => undefined,
    stopping: () => undefined,
    startWatchdog: () => () => undefined,
  };
}

type SdNotify = (unsetEnvironment: number, state: string) => number;

function loadSdNotify(library: string): SdNotify {
  // require(), as hypervisor/libvirt/koffi.ts does: koffi is CommonJS, and service/ may not import that file.
  const koffi = createRequire(import.meta.url)('koffi') as typeof KoffiModule;
  const lib = koffi.load(library);
  return lib.func('int sd_notify(int unset_environment, const char *state)') as SdNotify;
}

export function createNotifier(env: NodeJS.ProcessEnv = process.env, options: NotifierOptions = {}): Notifier {
  const socket = env.NOTIFY_SOCKET;
  if (socket === undefined || socket === '') return disabled('NOTIFY_SOCKET is not set: the service was not started by systemd as a Type=notify service.');
  if (socket !== process.env.NOTIFY_SOCKET) {
    // libsystemd sends to the process's own NOTIFY_SOCKET, whatever `env` says.
    return disabled("NOTIFY_SOCKET of the environment given is not the process's, and libsystemd sends only to the process's.");
  }
  const library = options.library ?? LIBSYSTEMD;
  let sdNotify: SdNotify;
  try {
    sdNotify = loadSdNotify(library);
  } catch (error) {
    const reason = `${library} cannot be loaded (${(error as Error).message.split('\n', 1)[0]}); systemd is not told when the service is ready. Install libsystemd0 (deploy/debian-packages.txt).`;
    options.log?.warn({ component: 'systemd' }, reason);
    return disabled(reason);
  }

  const warned = new Set<string>();
  const send = (state: string): void => {
    let result: number;
    try {
      result = sdNotify(0, state);
    } catch (error) {
      if (!warned.has('threw')) options.log?.warn({ component: 'systemd', error: (error as Error).message }, 'sd_notify failed');
      warned.add('threw');
      return;
    }
    // > 0 sent; 0 NOTIFY_SOCKET gone from the environment; < 0 -errno (the socket is gone, systemd restarted…).
    if (result <= 0 && !warned.has(String(result))) {
      warned.add(String(result));
      options.log?.warn({ component: 'systemd', result, first: state.split('\n', 1)[0] }, 'sd_notify did not reach systemd; the service keeps running');
    }
  };
  const withStatus = (first: string, status: string | undefined): string => (status === undefined ? first : `${first}\nSTATUS=${statusLine(status)}`);

  let watchdog: { timer: NodeJS.Timeout; stop: () => void } | null = null;
  return {
    enabled: true,
    reason: null,
    ready: (status) => send(withStatus('READY=1', status)),
    status: (text) => send(`STATUS=${statusLine(text)}`),
    stopping: (status) => send(withStatus('STOPPING=1', status)),
    startWatchdog: () => {
      if (watchdog) return watchdog.stop;
      const usec = watchdogUsec(env);
      if (usec === null) return () => undefined;
      // Half the period, as sd_watchdog_enabled(3) advises: one late ping does not get the service killed.
      const everyMs = Math.max(1, Math.floor(usec / 2000));
      send('WATCHDOG=1');
      const timer = setInterval(() => send('WATCHDOG=1'), everyMs);
      // The pings must not keep a stopping service alive.
      timer.unref();
      const stop = (): void => {
        clearInterval(timer);
        if (watchdog?.timer === timer) watchdog = null;
      };
      watchdog = { timer, stop };
      return stop;
    },
  };
}
