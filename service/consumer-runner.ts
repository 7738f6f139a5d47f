/**
 * A service's consumer of its request queue: every delivery runs as tracked
 * work, settled when the work ends — acknowledged when it succeeded; handed
 * back to the broker (requeued) when the service stops before it finished or
 * when it failed unexpectedly the first time; moved to `novalet.dead`
 * (HANDLER_FAILED, with the error's words) when it failed again after its
 * redelivery, so that a request that trips a bug is kept for the operator
 * instead of looping for ever. Background work of the service (a queued
 * build) is tracked the same way, so that stop() sees all of it.
 *
 * stop(): no new deliveries; the work under way gets `graceMs` to finish
 * (0 waits for ever); what has not finished by then is aborted with a
 * HandedBack reason and its delivery requeued.
 */
import type { Logger } from '../config/logger.js';
import type { Broker, ConsumerHandle, Delivery } from '../messaging/broker.js';
import type { DeadLetterCode } from '../messaging/contracts/dead-letter.js';

/** The reason work is aborted when the service stops: its request goes back to the broker. */
export class HandedBack extends Error {
  constructor() {
    super('the service is stopping; the request is handed back to the broker');
  }
}

export interface ConsumerRunnerOptions {
  broker: Broker;
  queue: string;
  prefetch: number;
  log: Logger;
  /** Handles one delivery; may settle it itself (ack, or nack); resolves when done. */
  handle(delivery: Delivery, signal: AbortSignal): Promise<void>;
  /** Moves a delivery to novalet.dead with the reason (confirmed). */
  deadLetter(delivery: Delivery, code: DeadLetterCode, reason: string): Promise<void>;
}

interface Work {
  delivery: Delivery | null;
  abort: AbortController;
  done: Promise<void>;
}

export class ConsumerRunner {
  readonly #work = new Set<Work>();
  #consumer: ConsumerHandle | null = null;
  #stopping = false;
  /** Work that ended handed back (its delivery requeued, its build left for the next start). */
  #handedBack = 0;

  constructor(private readonly options: ConsumerRunnerOptions) {}

  get consuming(): boolean {
    return this.#consumer !== null && !this.#stopping;
  }

  get stopping(): boolean {
    return this.#stopping;
  }

  /** Deliveries and background work under way. */
  get inFlight(): number {
    return this.#work.size;
  }

  async start(): Promise<void> {
    const { broker, queue, prefetch } = this.options;
    this.#consumer = await broker.consume(queue, (delivery) => void this.#run(delivery, (signal) => this.options.handle(delivery, signal)), { prefetch });
  }

  /** Tracks background work like a delivery: aborted with HandedBack on stop. Resolves when it ends (never rejects). */
  track(work: (signal: AbortSignal) => Promise<void>): Promise<void> {
    return this.#run(null, work);
  }

  async stop(graceMs: number): Promise<{ finished: number; handedBack: number }> {
    if (this.#stopping) return { finished: 0, handedBack: 0 };
    this.#stopping = true;
    await this.#consumer?.cancel().catch((err: unknown) => this.options.log.warn({ err }, 'could not cancel the consumer'));
    const pending = [...this.#work];
    let timer: NodeJS.Timeout | undefined;
    const timedOut = graceMs === 0 ? new Promise<never>(() => undefined) : new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), graceMs)));
    const outcome = await Promise.race([Promise.all(pending.map((w) => w.done)).then(() => 'done' as const), timedOut]);
    clearTimeout(timer);
    if (outcome === 'timeout') {
      // Work that takes the signal ends handed back; work that cannot stop half-way (an operation on a guest) runs to its end.
      for (const w of this.#work) w.abort.abort(new HandedBack());
      await Promise.all([...this.#work].map((w) => w.done));
    }
    return { finished: pending.length - this.#handedBack, handedBack: this.#handedBack };
  }

  #run(delivery: Delivery | null, work: (signal: AbortSignal) => Promise<void>): Promise<void> {
    const abort = new AbortController();
    const entry: Work = { delivery, abort, done: Promise.resolve() };
    if (delivery && this.#stopping) {
      delivery.nack(true);
      return Promise.resolve();
    }
    entry.done = (async () => {
      try {
        await work(abort.signal);
        delivery?.ack();
      } catch (err) {
        await this.#failed(delivery, abort.signal, err);
      } finally {
        this.#work.delete(entry);
      }
    })();
    this.#work.add(entry);
    return entry.done;
  }

  async #failed(delivery: Delivery | null, signal: AbortSignal, err: unknown): Promise<void> {
    const { log } = this.options;
    if (signal.aborted && signal.reason instanceof HandedBack) {
      this.#handedBack += 1;
      delivery?.nack(true);
      return;
    }
    if (!delivery) {
      log.error({ err }, 'background work of the service failed unexpectedly');
      return;
    }
    if (!delivery.redelivered) {
      // A bug, not bad input: the request goes back for one more try rather than being lost.
      log.error({ err, routing_key: delivery.routingKey }, 'a request failed unexpectedly; it is handed back to the broker for one more try');
      delivery.nack(true);
      return;
    }
    log.error({ err, routing_key: delivery.routingKey }, 'a request failed unexpectedly again; it is moved to novalet.dead');
    const words = err instanceof Error ? err.message : String(err);
    await this.options.deadLetter(delivery, 'HANDLER_FAILED', `The service failed on it twice: ${words}`).then(
      () => delivery.ack(),
      () => delivery.nack(true),
    );
  }
}
