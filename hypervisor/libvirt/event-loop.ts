/**
 * libvirt's default event loop, run for as long as a connection needs it.
 *
 * virEventRegisterDefaultImpl() is called once per process, before the first
 * connection opens (libvirt requires it for domain events and keepalive).
 * virEventRunDefaultImpl() runs one iteration — it waits in poll(2) until a
 * handle or timeout fires, dispatches it and returns — so it is called through
 * koffi's `.async` on a libuv pool thread and called again from its completion
 * callback on the main thread, for as long as at least one connection holds the
 * loop (acquireEventLoop / releaseEventLoop).
 *
 * Callbacks libvirt dispatches from the loop (domain events, close callbacks)
 * run on that pool thread; koffi relays calls of registered JS callbacks from
 * other threads to the main thread and blocks the pool thread until the JS
 * function returns, so listeners run on the main thread like any JS code.
 *
 * A pending `.async` iteration is a libuv work request and keeps Node alive.
 * When the last holder releases the loop it stops re-arming and wakes the
 * iteration in flight: adding (and removing) a disabled timeout makes libvirt
 * write to its wake-up pipe, so poll(2) returns at once and Node can exit.
 * The same happens on process exit with connections still open: Node joins
 * libuv's threads when it exits, and would otherwise wait for ever.
 *
 * Thread budget: the iteration occupies one of libuv's pool threads for as long
 * as the loop runs (UV_THREADPOOL_SIZE, 4 by default, leaving 3 for fs, dns and
 * crypto). libvirt's blocking calls do not use the libuv pool — they run on
 * novalet's own call threads (call-pool.ts) — so novalet leaves
 * UV_THREADPOOL_SIZE at its default; an operator may raise it in the service's
 * environment, never lower it below 2.
 */
import type { IKoffiRegisteredCallback } from 'koffi';
import { koffi } from './koffi.js';
import { NovaletError } from '../../config/novalet-error.js';
import { mainThreadNatives } from './main-thread-natives.js';

/** Delay before running the loop again after virEventRunDefaultImpl failed, so a persistent failure cannot spin. */
const RETRY_AFTER_FAILURE_MS = 100;

let registered = false;
let holders = 0;
let iterationInFlight = false;
let iterations = 0;
let failures = 0;
let wakeCallback: IKoffiRegisteredCallback | null = null;

function register(): void {
  if (registered) return;
  const natives = mainThreadNatives();
  if (natives.eventRegisterDefaultImpl() < 0) {
    throw new NovaletError(
      'LIBVIRT_EVENT_LOOP_FAILED',
      "libvirt could not register its default event loop implementation (virEventRegisterDefaultImpl failed).",
      'Check that libvirt.so.0 is intact and that the process may create pipes (file descriptor limits).',
    );
  }
  registered = true;
}

function runIteration(): void {
  iterationInFlight = true;
  mainThreadNatives().eventRunDefaultImpl.async((error: unknown, result: number) => {
    iterationInFlight = false;
    iterations += 1;
    if (holders === 0) return;
    if (error !== null && error !== undefined) {
      failures += 1;
      setTimeout(runIteration, RETRY_AFTER_FAILURE_MS);
    } else if (result < 0) {
      failures += 1;
      setTimeout(runIteration, RETRY_AFTER_FAILURE_MS);
    } else {
      runIteration();
    }
  });
}

/** Interrupts the iteration waiting in poll(2), from the main thread. */
function wake(): void {
  const natives = mainThreadNatives();
  wakeCallback ??= koffi.register(() => undefined, koffi.pointer(natives.types.timeout));
  // A disabled timeout (frequency -1) never fires; adding and removing it only wakes the loop.
  const timer = natives.eventAddTimeout(-1, wakeCallback, null, null);
  if (timer >= 0) natives.eventRemoveTimeout(timer);
}

/**
 * At exit Node joins libuv's pool threads (process.exit, an uncaught
 * exception): an iteration still waiting in poll(2) would hold the process
 * forever. Wake it so that its thread can be joined.
 */
function wakeAtExit(): void {
  holders = 0;
  if (iterationInFlight) wake();
}

/** Registers libvirt's event loop if needed and keeps it running until the matching release. Call before virConnectOpen. */
export function acquireEventLoop(): void {
  if (!registered) process.on('exit', wakeAtExit);
  register();
  holders += 1;
  if (!iterationInFlight) runIteration();
}

/** Gives back one hold; after the last, the loop stops and no longer keeps Node alive. */
export function releaseEventLoop(): void {
  if (holders === 0) return;
  holders -= 1;
  if (holders === 0 && iterationInFlight) wake();
}

export interface EventLoopStatus {
  registered: boolean;
  holders: number;
  /** An iteration is waiting on a libuv pool thread. */
  running: boolean;
  iterations: number;
  failures: number;
}

export function eventLoopStatus(): EventLoopStatus {
  return { registered, holders, running: iterationInFlight, iterations, failures };
}
