/**
 * nova's `[DEFAULT] max_concurrent_builds`: at most `limit` builds run at
 * once (0: no limit); the rest wait their turn in arrival order.
 */
export class BuildSlots {
  #running = 0;
  readonly #waiting: (() => void)[] = [];

  constructor(private readonly limit: number) {}

  get running(): number {
    return this.#running;
  }

  async run<T>(work: () => Promise<T>): Promise<T> {
    if (this.limit > 0 && this.#running >= this.limit) {
      await new Promise<void>((resolve) => this.#waiting.push(resolve));
    } else {
      this.#running += 1;
    }
    try {
      return await work();
    } finally {
      const next = this.#waiting.shift();
      // The slot passes straight to the next waiter, so the count stays right.
      if (next) next();
      else this.#running -= 1;
    }
  }
}
