// When and how long to wait before trying a request again: capped exponential backoff with
// full jitter, never shorter than the service's Retry-After. Pure; no timers here.

export interface RetryOptions {
  /** Attempts in all, the first included (default 8). The overall deadline still applies. */
  maxAttempts?: number;
  /** Ceiling of the first retry's delay (default 100 ms); doubles per retry. */
  baseDelayMs?: number;
  /** Ceiling of any one delay (default 5 000 ms). */
  maxDelayMs?: number;
}

export const DEFAULT_RETRY: Required<RetryOptions> = { maxAttempts: 8, baseDelayMs: 100, maxDelayMs: 5_000 };

/** Statuses that say "not processed, try again": timeout, rate limit, gateway and overload. */
export const RETRYABLE_STATUSES: ReadonlySet<number> = new Set([408, 429, 502, 503, 504]);

/**
 * How a request may be repeated. `idempotent`: a repeat cannot do the thing twice (GET, PATCH,
 * DELETE, a send with its Idempotency-Key), so network errors and every retryable status are
 * retried. `unsafe`: a repeat could (creating a provider, a provider test that sends), so only
 * a 429, which the service answers before doing anything, is retried.
 */
export type RetryMode = 'idempotent' | 'unsafe';

export function shouldRetryStatus(status: number, mode: RetryMode): boolean {
  return mode === 'idempotent' ? RETRYABLE_STATUSES.has(status) : status === 429;
}

/**
 * Delay before retry number `retry` (1 for the first retry): uniformly random in
 * [0, min(max, base·2^(retry−1))] ("full jitter"), raised to `retryAfterMs` when the service
 * asked for that much.
 */
export function backoffDelay(
  retry: number,
  options: Required<RetryOptions>,
  retryAfterMs?: number,
  random: () => number = Math.random,
): number {
  const ceiling = Math.min(options.maxDelayMs, options.baseDelayMs * 2 ** Math.max(0, retry - 1));
  const jittered = Math.floor(random() * ceiling);
  return retryAfterMs === undefined ? jittered : Math.max(jittered, retryAfterMs);
}
