/**
 * Brute-force protection for every door that authenticates (HTTP guard, WebSocket
 * upgrade): one function, so both count failures the same way.
 */
import type { AuthContext, AuthInput, Authenticate } from '../auth/authenticate.js';
import { GatewayError } from '../errors/index.js';
import { rateLimitError } from './errors.js';
import type { RateLimiter } from './limiter.js';

export interface GuardedAuthenticateOptions {
  limiter: RateLimiter;
  authenticate: Authenticate;
  /** The client address (see `clientIp` / Fastify's `request.ip`). */
  ip: string;
  input: AuthInput;
}

/**
 * Failures that prove nothing about guessing: no credential at all, or a genuine access
 * token that merely expired (clients refresh on it; counting it would lock them out).
 */
const NOT_COUNTED = new Set(['missing_credentials', 'token_expired']);

/**
 * Authenticates under RATE_LIMIT_AUTH_FAILURES_PER_MIN. Guarantees: an address already at
 * its failure limit is refused with a 429 (`ip_auth_failures`) BEFORE its credential is
 * looked at, so a correct guess is refused too; every `unauthenticated` failure with a
 * presented credential (bad, revoked or unknown token) counts one failure; successes and
 * requests without credentials count nothing. Other errors pass through uncounted.
 *
 * One exception, decided for speed: a token (personal or access token) this instance verified
 * within the last second (`authenticate.recentlyVerified`) is no guess, so its request skips
 * the lockout check (one rate-limit store call less on the busiest path). A locked-out address
 * can thus keep using a token that someone is using right now; it still cannot find a new one.
 */
export async function authenticateWithinFailureLimit(options: GuardedAuthenticateOptions): Promise<AuthContext> {
  const { limiter, authenticate, ip, input } = options;
  if (limiter.limitsAuthFailures && !authenticate.recentlyVerified(input)) {
    const failures = await limiter.admitIp(ip, 'auth_failure');
    if (!failures.allowed) throw rateLimitError(failures);
  }
  try {
    return await authenticate(input);
  } catch (err) {
    if (err instanceof GatewayError && err.code === 'unauthenticated' && !NOT_COUNTED.has(err.reason ?? '')) {
      await limiter.recordAuthFailure(ip);
    }
    throw err;
  }
}
