/** stop() waits at most this for cancels, outstanding confirms and the close. */
export const STOP_WAIT_MS = 5_000;

/** `promise`, or a rejection once `ms` have passed: shutdown waits on a broker that may never answer. */
export function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}
