/**
 * Runs libvirt's blocking C calls off Node's main thread, on a few worker
 * threads of our own, one call per thread at a time.
 *
 * Why not koffi's `.async`: it runs one C function on whichever libuv pool
 * thread is free. libvirt keeps the last error per thread and the next libvirt
 * call on that thread resets it, so the error of a failed `.async` call can
 * only be read on that same thread, right after the call — and koffi offers no
 * way to run a second function there. virSetErrorFunc handlers do run on the
 * failing thread, but koffi relays JS callbacks to the main thread, where
 * nothing tells which of several concurrent calls the error belongs to. A
 * worker thread calls synchronously: the call and virGetLastError() run back to
 * back on one OS thread, and the answer carries result and error together.
 *
 * Idle threads are unref'd (they never keep the process alive); a thread with a
 * call in flight is ref'd, like any pending I/O.
 *
 * Each thread is a whole Node isolate, ~7 MiB resident whatever it does, so
 * the pool grows for a burst of calls and shrinks after it: a thread beyond
 * the first that has had nothing to do for `idleMs` is stopped, as a thread
 * pool's keep-alive does. The first stays, so a lone call never waits for a
 * thread to start (~80 ms: an isolate, koffi, libvirt.so.0).
 */
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import { NovaletError } from '../../config/novalet-error.js';
import { LIBVIRT_SONAME } from './constants.js';
import { CALL_WORKER_SOURCE } from './call-worker-source.js';
import { callIsAboutDomain, LibvirtError, type LibvirtErrorRecord } from './error.js';

/** A C pointer as an integer, the form in which pointers cross threads. */
export type NativeAddress = number;

/** How a libvirt function says it failed: a negative int, a NULL pointer, or never. */
export type FailureSignal = 'negative' | 'null' | 'never';

export interface NativeCall {
  /** What the call does, for error messages: "define the domain". */
  operation: string;
  /** The C prototype in koffi's syntax; pointers to libvirt objects as uintptr_t. */
  proto: string;
  /** The arguments; `_Out_` parameters as one-element arrays. */
  args: unknown[];
  fails: FailureSignal;
  /** An `_Out_ void **` argument holding an array of `result` pointers that libvirt allocated. */
  pointerArrayArg?: number;
}

export interface NativeOutcome {
  value: unknown;
  /** The arguments after the call, `_Out_` parameters filled in. */
  args: unknown[];
}

interface Reply {
  id: number;
  ok: boolean;
  value?: unknown;
  args?: unknown[];
  error?: LibvirtErrorRecord | null;
  thrown?: string;
}

interface Job {
  id: number;
  call: NativeCall;
  resolve: (outcome: NativeOutcome) => void;
  reject: (error: Error) => void;
}

interface CallThread {
  worker: Worker;
  job: Job | null;
  /** Settles once the thread has loaded koffi and libvirt.so.0, or has stopped. */
  ready: Promise<void>;
  /** Stops the thread once it has been idle for the pool's idle time (not for the first thread). */
  idleTimer: NodeJS.Timeout | null;
}

/** Enough for a create, a destroy and a few queries at once; more calls wait in line. */
export const DEFAULT_LIBVIRT_CALL_THREADS = 4;

/** How long a thread beyond the first may stay idle before it is stopped. */
export const DEFAULT_LIBVIRT_CALL_THREAD_IDLE_MS = 15_000;

export class LibvirtCallPool {
  readonly #size: number;
  readonly #idleMs: number;
  readonly #threads: CallThread[] = [];
  readonly #queue: Job[] = [];
  #nextId = 1;

  constructor(size = DEFAULT_LIBVIRT_CALL_THREADS, idleMs = DEFAULT_LIBVIRT_CALL_THREAD_IDLE_MS) {
    if (!Number.isInteger(size) || size < 1) throw new RangeError(`libvirt call threads must be a positive integer, not ${size}`);
    if (!Number.isFinite(idleMs) || idleMs < 0) throw new RangeError(`the libvirt call threads' idle time must be a non-negative number of milliseconds, not ${idleMs}`);
    this.#size = size;
    this.#idleMs = idleMs;
  }

  /** Threads started so far (for tests and diagnostics). */
  get threadCount(): number {
    return this.#threads.length;
  }

  /**
   * Starts one thread now, so that its start-up (a Node isolate, koffi,
   * libvirt.so.0) overlaps the caller's own module loading instead of
   * delaying the first call. Makes no libvirt call: LIBVIRT_LOG_OUTPUTS may
   * still be set before libvirt initialises on the first one.
   */
  warm(): void {
    if (this.#threads.length === 0) this.#start();
  }

  /**
   * Waits until every thread has finished loading. A process that exits
   * while a thread is still inside koffi's native start-up (a command that
   * failed on its input right after warm()) can abort in koffi, exit status
   * 134 instead of the command's own; the threads are held referenced meanwhile.
   */
  async settled(): Promise<void> {
    const threads = [...this.#threads];
    for (const thread of threads) thread.worker.ref();
    try {
      await Promise.all(threads.map((thread) => thread.ready));
    } finally {
      for (const thread of threads) if (thread.job === null) thread.worker.unref();
    }
  }

  call(call: NativeCall): Promise<NativeOutcome> {
    return new Promise((resolve, reject) => {
      this.#queue.push({ id: this.#nextId++, call, resolve, reject });
      this.#dispatch();
    });
  }

  /** Stops every thread; calls in flight fail. The pool starts threads again on the next call. */
  async terminate(): Promise<void> {
    const threads = this.#threads.splice(0);
    for (const thread of threads) this.#stopIdleTimer(thread);
    await Promise.all(threads.map((thread) => thread.worker.terminate()));
  }

  #dispatch(): void {
    while (this.#queue.length > 0) {
      const thread = this.#threads.find((candidate) => candidate.job === null) ?? this.#start();
      if (thread === null) return;
      const job = this.#queue.shift()!;
      this.#stopIdleTimer(thread);
      thread.job = job;
      thread.worker.ref();
      const { operation: _operation, ...request } = job.call;
      thread.worker.postMessage({ id: job.id, ...request });
    }
  }

  #start(): CallThread | null {
    if (this.#threads.length >= this.#size) return null;
    const koffiPath = createRequire(import.meta.url).resolve('koffi');
    const worker = new Worker(CALL_WORKER_SOURCE, {
      eval: true,
      workerData: { koffiPath, soname: LIBVIRT_SONAME },
      name: 'novalet-libvirt-call',
    });
    let loaded = () => {};
    const thread: CallThread = { worker, job: null, ready: new Promise((resolve) => (loaded = resolve)), idleTimer: null };
    worker.on('message', (reply: Reply | { ready: true }) => ('ready' in reply ? loaded() : this.#finish(thread, reply)));
    worker.on('error', (error) => {
      loaded();
      this.#lose(thread, error);
    });
    worker.on('exit', (exitCode) => {
      loaded();
      this.#lose(thread, new Error(`the thread exited with code ${exitCode}`));
    });
    // After the listeners: a 'message' listener refs the worker's port again,
    // and a thread warmed but never called (a command that fails on its input
    // first) would keep the process alive for ever.
    worker.unref();
    this.#threads.push(thread);
    return thread;
  }

  #finish(thread: CallThread, reply: Reply): void {
    const job = thread.job;
    thread.job = null;
    thread.worker.unref();
    if (job !== null && job.id === reply.id) {
      if (reply.ok) {
        job.resolve({ value: reply.value, args: reply.args ?? [] });
      } else if (reply.thrown !== undefined) {
        job.reject(
          new NovaletError(
            'LIBVIRT_CALL_FAILED',
            `novalet could not call libvirt to ${job.call.operation} (${reply.thrown}).`,
            'This is a bug in novalet\'s libvirt binding or an incompatible libvirt.so.0; report it with the libvirt version.',
          ),
        );
      } else {
        job.reject(new LibvirtError(job.call.operation, reply.error ?? null, { aboutDomain: callIsAboutDomain(job.call.proto) }));
      }
    }
    this.#dispatch();
    if (thread.job === null) this.#startIdleTimer(thread);
  }

  /** Threads are taken first-idle-first, so the later ones are those that go idle for long. */
  #startIdleTimer(thread: CallThread): void {
    if (thread === this.#threads[0] || thread.idleTimer !== null) return;
    thread.idleTimer = setTimeout(() => {
      thread.idleTimer = null;
      const index = this.#threads.indexOf(thread);
      if (thread.job !== null || index <= 0) return;
      this.#threads.splice(index, 1);
      void thread.worker.terminate();
    }, this.#idleMs);
    thread.idleTimer.unref();
  }

  #stopIdleTimer(thread: CallThread): void {
    if (thread.idleTimer === null) return;
    clearTimeout(thread.idleTimer);
    thread.idleTimer = null;
  }

  #lose(thread: CallThread, cause: Error): void {
    const index = this.#threads.indexOf(thread);
    if (index < 0) return;
    this.#threads.splice(index, 1);
    this.#stopIdleTimer(thread);
    const job = thread.job;
    thread.job = null;
    if (job !== null) {
      job.reject(
        new NovaletError(
          'LIBVIRT_CALL_THREAD_FAILED',
          `The thread that called libvirt to ${job.call.operation} stopped: ${cause.message}.`,
          'Check that the koffi package (with its native module) and libvirt.so.0 load in a worker thread; the next call starts a new thread.',
        ),
      );
    }
    this.#dispatch();
  }
}

let shared: LibvirtCallPool | null = null;

/** The process-wide pool every libvirt object uses. */
export function libvirtCallPool(): LibvirtCallPool {
  shared ??= new LibvirtCallPool();
  return shared;
}

/** Runs one blocking libvirt call off the main thread; a libvirt failure rejects with a LibvirtError. */
export function callLibvirt(call: NativeCall): Promise<NativeOutcome> {
  return libvirtCallPool().call(call);
}
