/** The rate-limit policy layer; see docs/rate-limits.md. */
export type {
  AdmitRequestInput,
  FailureCounter,
  IpBucket,
  LimitDecision,
  LimitName,
  LimitStatus,
  RateLimiterLogger,
  RateLimiterOptions,
  RequestAdmission,
  StreamAdmission,
  StreamInput,
  StreamLease,
  TokenReservation,
} from './limiter.js';
export { RateLimiter } from './limiter.js';
export { ipGroup } from './keys.js';
export type { GuardedAuthenticateOptions } from './auth-failures.js';
export { authenticateWithinFailureLimit } from './auth-failures.js';
export { bindingLimit, rateLimitError, rateLimitHeaders } from './errors.js';
export type { RateLimitConfig, TierLimits, TierOverride } from './tiers.js';
export { applyOverride, tierOverrideSchema, tierTable } from './tiers.js';
export { createRateLimitStore } from '../engine/ratelimit/index.js';
