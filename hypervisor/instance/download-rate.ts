/**
 * image_download_min_rate over image_download_min_rate_window, as curl's
 * --speed-limit/--speed-time: once a transfer has run for a whole window,
 * the bytes of the last window must average at least the rate, or the
 * transfer is given up. A server that trickles a byte every few seconds
 * never trips the idle timeout and would otherwise hold a build slot for
 * image_download_timeout.
 */

export interface RateWatch {
  stop(): void;
}

/**
 * Samples `bytes()` ten times a window and calls `tooSlow(delivered,
 * seconds)` (once) when a whole window has passed with fewer than
 * `minRate` × window bytes. minRate 0 watches nothing. Timers that fire late
 * (a busy host) only lengthen the span measured, never shorten it.
 */
export function watchRate(minRate: number, windowMs: number, bytes: () => number, tooSlow: (delivered: number, seconds: number) => void): RateWatch {
  if (minRate <= 0 || windowMs <= 0) return { stop: () => undefined };
  const samples: { at: number; bytes: number }[] = [{ at: performance.now(), bytes: bytes() }];
  const timer = setInterval(() => {
    const now = performance.now();
    const current = bytes();
    samples.push({ at: now, bytes: current });
    // The newest sample at least a window old is where the span starts; older ones are no longer needed.
    let start = -1;
    for (let i = samples.length - 1; i >= 0; i--) {
      if (now - samples[i]!.at >= windowMs) {
        start = i;
        break;
      }
    }
    if (start < 0) return;
    samples.splice(0, start);
    const span = (now - samples[0]!.at) / 1000;
    const delivered = current - samples[0]!.bytes;
    if (delivered < minRate * span) {
      clearInterval(timer);
      tooSlow(delivered, span);
    }
  }, Math.max(10, windowMs / 10));
  return { stop: () => clearInterval(timer) };
}
