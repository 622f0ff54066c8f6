/**
 * How a limit decision reaches a client: a 429 GatewayError naming the limit, and the
 * headers Anthropic's API sends (`anthropic-ratelimit-*`, reset in RFC 3339).
 */
import { GatewayError } from '../errors/index.js';
import type { LimitDecision, LimitName, LimitStatus } from './limiter.js';

const phrases: Record<LimitName, (limit: number) => string> = {
  requests_per_minute: (n) => `${n} requests per minute`,
  requests_per_day: (n) => `${n} requests per day`,
  tokens_per_minute: (n) => `${n} tokens per minute`,
  concurrent_streams: (n) => `${n} concurrent streams`,
  ip_auth: (n) => `${n} sign-in requests per minute from your address`,
  ip_upgrade: (n) => `${n} connection attempts per minute from your address`,
  ip_auth_failures: (n) => `${n} failed sign-ins per minute from your address`,
};

/** The refused limit that keeps the caller waiting longest, if any. */
export function bindingLimit(decision: LimitDecision): LimitStatus | undefined {
  let worst: LimitStatus | undefined;
  for (const status of decision.limits) {
    if (status.retryAfterMs > 0 && (!worst || status.retryAfterMs > worst.retryAfterMs)) worst = status;
  }
  return worst;
}

/**
 * The 429 for a refused decision: `rate_limited`, reason = the limit's name (e.g.
 * `requests_per_minute`), retryAfterSeconds = ceil(retryAfterMs / 1000), at least 1.
 * Example message: "Rate limit exceeded: 60 requests per minute; retry in 12 s". The error
 * carries the decision's rate-limit headers, so every door answers with them.
 */
export function rateLimitError(decision: LimitDecision): GatewayError {
  const limit = bindingLimit(decision);
  if (!limit) return new GatewayError('rate_limited', 'Rate limit exceeded; retry in 1 s', { reason: 'rate_limited', retryAfterSeconds: 1 });
  const seconds = Math.max(1, Math.ceil(limit.retryAfterMs / 1000));
  return new GatewayError('rate_limited', `Rate limit exceeded: ${phrases[limit.name](limit.limit)}; retry in ${seconds} s`, {
    reason: limit.name,
    retryAfterSeconds: seconds,
    retryAfterMs: limit.retryAfterMs,
    headers: rateLimitHeaders(decision),
  });
}

/** Refused first (longest wait), then the fewest remaining relative to the limit. */
function moreConstraining(a: LimitStatus, b: LimitStatus | undefined): boolean {
  if (!b) return true;
  if (a.retryAfterMs !== b.retryAfterMs) return a.retryAfterMs > b.retryAfterMs;
  return a.remaining / a.limit < b.remaining / b.limit;
}

/** The three header names of each kind, built once (not per answer). */
const HEADER_NAMES = {
  requests: namesOf('requests'),
  tokens: namesOf('tokens'),
};

function namesOf(kind: 'requests' | 'tokens') {
  return {
    limit: `anthropic-ratelimit-${kind}-limit`,
    remaining: `anthropic-ratelimit-${kind}-remaining`,
    reset: `anthropic-ratelimit-${kind}-reset`,
  };
}

/** One limit's three headers, as Anthropic sends them (reset in RFC 3339). */
function statusHeaders(headers: Record<string, string>, names: ReturnType<typeof namesOf>, status: LimitStatus): void {
  headers[names.limit] = String(status.limit);
  headers[names.remaining] = String(status.remaining);
  headers[names.reset] = resetTime(status.resetAtMs);
}

let lastReset = { second: -1, text: '' };

/** RFC 3339 at whole seconds (rounded up), as Anthropic sends its resets; the last one is reused. */
function resetTime(ms: number): string {
  const second = Math.ceil(ms / 1000);
  if (second !== lastReset.second) lastReset = { second, text: new Date(second * 1000).toISOString().replace('.000Z', 'Z') };
  return lastReset.text;
}

/**
 * Headers describing the most constraining request limit and the token limit:
 * `anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset}`, the set Anthropic's API
 * sends; when refused, also `retry-after` (s) and `retry-after-ms`. Nothing for a decision
 * with no limits. Added to `into` (returned). Every answer carries these: one pass over the
 * limits, no sorting.
 */
export function rateLimitHeaders(decision: LimitDecision, into: Record<string, string> = {}): Record<string, string> {
  const headers = into;
  let requests: LimitStatus | undefined;
  let tokens: LimitStatus | undefined;
  for (const status of decision.limits) {
    if (status.name === 'tokens_per_minute') {
      if (moreConstraining(status, tokens)) tokens = status;
    } else if (status.name !== 'concurrent_streams' && moreConstraining(status, requests)) {
      requests = status;
    }
  }
  if (requests) statusHeaders(headers, HEADER_NAMES.requests, requests);
  if (tokens) statusHeaders(headers, HEADER_NAMES.tokens, tokens);
  const binding = decision.allowed ? undefined : bindingLimit(decision);
  if (binding) {
    headers['retry-after'] = String(Math.max(1, Math.ceil(binding.retryAfterMs / 1000)));
    headers['retry-after-ms'] = String(binding.retryAfterMs);
  }
  return headers;
}
