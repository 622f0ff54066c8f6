/**
 * Retry timing: exponential backoff with full jitter, upstream's own hints first, all bounded
 * by a deadline and a retry count.
 *
 * When a retry is still allowed ("commit" rule, applied by `callUpstream`): an attempt may be
 * retried only while nothing has been sent to our client. A streaming answer (2xx with
 * `content-type: text/event-stream`) is committed as soon as its status and headers arrive:
 * from then on bytes flow to the client unbuffered, and a failure mid-stream becomes an
 * `event: error` (see sse.ts), never a retry. Every other answer (JSON messages,
 * count_tokens, models, errors) is read whole before it is committed, so a connection that
 * breaks mid-body or a truncated JSON body is retried like a connection error. Those bodies
 * are small and the client sees no bytes before the gateway knows the answer is complete.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { CancelSignal } from './client.js';
import { headerValue } from './headers.js';

/** Time as the resilience code sees it; tests inject a fake one (no timing in unit tests). */
export interface Clock {
  now(): number;
  /** Waits `ms`; rejects with the signal's reason when it aborts first. */
  sleep(ms: number, signal?: CancelSignal): Promise<void>;
}

/**
 * The real clock. `sleep(ms)` resolves once `now()` has moved on by `ms`: timers run on a
 * monotonic clock, and about one timer in two hundred fires when `Date.now()` has moved on
 * one millisecond less. Callers compare against `now()` (a key cools down until a time taken
 * from it), so a retry woken that early found its key still cooling and was lost. Should the
 * wall clock be set back meanwhile (a step, not NTP's slewing), the sleep still ends at most
 * 100 ms after `ms` has passed on the monotonic clock.
 */
export const systemClock: Clock = {
  now: () => Date.now(),
  sleep: (ms, signal) =>
    new Promise<void>((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const until = Date.now() + ms;
      const latest = performance.now() + ms + 100;
      let timer: NodeJS.Timeout | undefined;
      const onAbort = () => {
        clearTimeout(timer);
        reject(signal!.reason);
      };
      const wait = () => {
        const left = Math.min(until - Date.now(), latest - performance.now());
        if (left > 0) {
          timer = setTimeout(wait, left);
          return;
        }
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      wait();
    }),
};

/** Longest wait we accept from a `retry-after` header (10 minutes). */
export const MAX_RETRY_AFTER_MS = 600_000;

/**
 * Upstream's retry hint in milliseconds: `retry-after-ms` first, then `retry-after` as seconds
 * (integer or decimal) or an HTTP date (relative to `now`). Undefined when absent or invalid;
 * clamped to [0, MAX_RETRY_AFTER_MS].
 */
export function parseRetryAfter(headers: IncomingHttpHeaders, now: number): number | undefined {
  const clamp = (ms: number) => Math.min(MAX_RETRY_AFTER_MS, Math.max(0, Math.round(ms)));
  const ms = headerValue(headers['retry-after-ms'])?.trim();
  if (ms && /^\d+(\.\d+)?$/.test(ms)) return clamp(Number(ms));
  const value = headerValue(headers['retry-after'])?.trim();
  if (!value) return undefined;
  if (/^\d+(\.\d+)?$/.test(value)) return clamp(Number(value) * 1000);
  const date = Date.parse(value);
  // An HTTP date names a weekday and a month; refuse bare numbers and other odd strings Date.parse accepts.
  if (Number.isNaN(date) || !/[a-z]{3}/i.test(value)) return undefined;
  return clamp(date - now);
}

export interface BackoffOptions {
  /** First backoff ceiling in ms (500 by default, like the SDKs). */
  baseMs?: number;
  /** Largest backoff ceiling in ms (8000 by default, like the SDKs). */
  capMs?: number;
  /** Uniform random in [0, 1); Math.random by default. */
  random?: () => number;
}

/** Full jitter: a uniform wait in [0, min(cap, base·2^retry)] for the `retry`-th retry (0-based). */
export function backoffDelay(retry: number, options: BackoffOptions = {}): number {
  const base = options.baseMs ?? 500;
  const cap = options.capMs ?? 8000;
  const random = options.random ?? Math.random;
  const ceiling = Math.min(cap, base * 2 ** Math.max(0, retry));
  return Math.floor(random() * ceiling);
}

export interface RetryPolicyOptions extends BackoffOptions {
  /** Retries per model after the first round of attempts (UPSTREAM_MAX_RETRIES). */
  maxRetries: number;
  /** Time from the call to the committed answer, across every attempt (UPSTREAM_DEADLINE_MS). */
  deadlineMs: number;
  /**
   * How long one attempt whose answer comes whole (a non-streaming message: Anthropic sends
   * its headers only once the reply is written, minutes for a long one) may wait for it
   * (UPSTREAM_TIMEOUT_MS); `deadlineMs` by default.
   */
  wholeAnswerMs?: number;
  clock?: Clock;
}

/** The retry rules of one gateway, shared by every call. Immutable. */
export class RetryPolicy {
  readonly maxRetries: number;
  readonly deadlineMs: number;
  readonly wholeAnswerMs: number;
  readonly clock: Clock;
  private readonly backoff: BackoffOptions;

  constructor(options: RetryPolicyOptions) {
    if (!Number.isInteger(options.maxRetries) || options.maxRetries < 0) throw new RangeError('maxRetries must be a non-negative integer');
    if (!(options.deadlineMs > 0)) throw new RangeError('deadlineMs must be positive');
    this.maxRetries = options.maxRetries;
    this.deadlineMs = options.deadlineMs;
    this.wholeAnswerMs = Math.max(options.wholeAnswerMs ?? 0, options.deadlineMs);
    this.clock = options.clock ?? systemClock;
    this.backoff = { baseMs: options.baseMs, capMs: options.capMs, random: options.random };
  }

  /** The wait before the `retry`-th retry (0-based): upstream's hint when it gave one, else jittered backoff. */
  delayFor(retry: number, hintMs: number | undefined): number {
    return hintMs !== undefined ? hintMs : backoffDelay(retry, this.backoff);
  }
}
