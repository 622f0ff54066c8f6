/** Reconnection delays: exponential backoff with full jitter (AWS architecture blog's "Full Jitter"). */

export interface BackoffOptions {
  /** First delay's upper bound in ms; 500 by default. */
  initialMs?: number;
  /** Largest delay in ms; 20 000 by default. */
  maxMs?: number;
}

/**
 * The delay before reconnection attempt `attempt` (0 for the first): a uniformly random
 * value in [initialMs, min(maxMs, initialMs · 2^attempt)]. `random` returns [0, 1).
 */
export function backoffDelay(attempt: number, options: BackoffOptions = {}, random: () => number = Math.random): number {
  const initial = options.initialMs ?? 500;
  const max = Math.max(initial, options.maxMs ?? 20_000);
  const ceiling = Math.min(max, initial * 2 ** Math.min(attempt, 30));
  return Math.round(initial + random() * (ceiling - initial));
}
