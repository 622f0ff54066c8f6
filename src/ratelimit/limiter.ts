/**
 * The rate-limit policy: which limits apply to whom, built on one RateLimitStore.
 * Transport-agnostic; the HTTP and WebSocket doors call these methods and turn a refusal
 * into `rateLimitError(decision)` and `rateLimitHeaders(decision)` (errors.ts). Its input
 * checks are in input.ts; the answers it makes from its store's, in decisions.ts.
 */
import { randomUUID } from 'node:crypto';
import type { CostAdjustment, LeaseResult, LimitRule, RateLimitStore, RuleOutcome } from '../engine/ratelimit/port.js';
import { GatewayError } from '../errors/index.js';
import type { Allowance, AllowancePolicy, AllowanceRule } from './allowances.js';
import { Allowances, DEFAULT_ALLOWANCE_POLICY } from './allowances.js';
import type { AdmissionPlan } from './decisions.js';
import { admissionOf, admittedFrom, limitStatus, streamAdmissionOf } from './decisions.js';
import { checkedAdmit, checkedStream, ipSchema, isCount, isName, tokensSchema } from './input.js';
import type { RateLimitConfig, TierLimits, TierOverride } from './tiers.js';
import { applyOverride, tierTable } from './tiers.js';
import { UserKeyCache, ipGroup, leasableKey } from './keys.js';

const MINUTE = 60_000;
const DAY = 86_400_000;

export type LimitName =
  | 'requests_per_minute'
  | 'requests_per_day'
  | 'tokens_per_minute'
  | 'concurrent_streams'
  | 'ip_auth'
  | 'ip_upgrade'
  | 'ip_auth_failures';

/** One limit's state after a decision (see RuleOutcome for the fields' meaning). */
export interface LimitStatus extends RuleOutcome {
  name: LimitName;
}

export interface LimitDecision {
  allowed: boolean;
  /** Every limit that applied; empty when none did or the store was skipped (degraded). */
  limits: LimitStatus[];
  /** True when the store failed and the `open` failure policy admitted without checking. */
  degraded: boolean;
}

/** What `settle` needs to give back unused tokens. */
export interface TokenReservation {
  id: string;
  key: string;
  windowMs: number;
  /** Tokens reserved at admission. */
  reserved: number;
  /** Set when admitted from this instance's allowance (allowances.ts): settled in memory. */
  allowance?: Allowance;
}

export interface RequestAdmission extends LimitDecision {
  /** Present when admitted under a tokens-per-minute limit. */
  reservation?: TokenReservation;
}

export interface StreamLease {
  key: string;
  leaseId: string;
  limit: number;
  ttlMs: number;
}

export interface StreamAdmission extends LimitDecision {
  /** Present when admitted under a concurrency limit; renew it within ttlMs, release it at the end. */
  lease?: StreamLease;
}

export interface AdmitRequestInput {
  userId: string;
  /** `Permissions.rateTier`; unknown names fall back to `default` with a warning. */
  tier?: string;
  /** Per-user limits that replace the tier's. */
  override?: TierOverride;
  /** Input tokens as estimated before the call (system + messages + tools). */
  estimatedInputTokens: number;
  /** The request's max_tokens. */
  maxTokens: number;
  now?: number;
}

export interface StreamInput {
  userId: string;
  tier?: string;
  override?: TierOverride;
  /** Defaults to a random UUID. */
  leaseId?: string;
}

export type IpBucket = 'auth' | 'upgrade' | 'auth_failure';

/** Structurally a prom-client `Counter<'operation' | 'policy'>`. */
export interface FailureCounter {
  inc(labels: { operation: string; policy: string }): void;
}

export interface RateLimiterLogger {
  warn(details: object, message: string): void;
}

export interface RateLimiterOptions {
  config: RateLimitConfig;
  store: RateLimitStore;
  logger?: RateLimiterLogger;
  /** Counted once per store failure, labelled by operation and policy. */
  failureCounter?: FailureCounter;
  /** A store call slower than this counts as a failure. Default 1000 ms. */
  storeTimeoutMs?: number;
  /**
   * Leasing of requests and tokens in bulk for busy users (allowances.ts), with a store
   * shared by instances when RATE_LIMIT_ALLOWANCES is true (the default); never with the
   * in-process store (exact and cheap). Overrides the policy's numbers (tests), or `false`.
   */
  allowances?: Partial<AllowancePolicy> | false;
}

export class RateLimiter {
  private readonly config: RateLimitConfig;
  private readonly store: RateLimitStore;
  private readonly tiers: Map<string, TierLimits>;
  private readonly logger: RateLimiterLogger | undefined;
  private readonly failureCounter: FailureCounter | undefined;
  private readonly timeoutMs: number;
  private readonly warnedTiers = new Set<string>();
  private readonly allowances: Allowances | undefined;
  /** Each user's store keys, made once (keys.ts). */
  private readonly keys = new UserKeyCache();

  constructor(options: RateLimiterOptions) {
    this.config = options.config;
    this.store = options.store;
    this.tiers = tierTable(options.config);
    this.logger = options.logger;
    this.failureCounter = options.failureCounter;
    this.timeoutMs = options.storeTimeoutMs ?? 1000;
    if (options.allowances !== false && options.config.rateLimitAllowances && !this.store.sync) {
      const store = {
        check: (rules: LimitRule[], aheadMs: number) => this.guard('lease', () => this.store.check(rules, { aheadMs }), false),
        reconcile: async (id: string, adjustments: CostAdjustment[]) => {
          await this.guard('reconcile', () => this.store.reconcile(id, adjustments), false);
        },
      };
      this.allowances = new Allowances(store, { ...DEFAULT_ALLOWANCE_POLICY, ...options.allowances });
    }
  }

  /** Gives back what live allowances hold unused (shutdown, after every request settled). */
  async close(): Promise<void> {
    await this.allowances?.close();
  }

  /** False when RATE_LIMIT_AUTH_FAILURES_PER_MIN is 0: failed authentications are not limited. */
  get limitsAuthFailures(): boolean {
    return this.config.rateLimitAuthFailuresPerMin > 0;
  }

  /** The limits that apply to a tier with an optional override. */
  limitsFor(tier = 'default', override?: TierOverride): TierLimits {
    let limits = this.tiers.get(tier);
    if (!limits) {
      if (this.warnedTiers.size < 100 && !this.warnedTiers.has(tier)) {
        this.warnedTiers.add(tier);
        this.logger?.warn({ tier }, 'unknown rate-limit tier; using default');
      }
      limits = this.tiers.get('default')!;
    }
    return applyOverride(limits, override);
  }

  /**
   * Checks requests/minute, requests/day and tokens/minute for a user in ONE atomic store
   * call, reserving `estimatedInputTokens + maxTokens` (capped at the tokens/minute limit)
   * when admitted. Throws `invalid_request` when the input alone can never fit the
   * tokens/minute limit, and `unavailable` when the store fails under the closed policy.
   */
  async admitRequest(input: AdmitRequestInput): Promise<RequestAdmission> {
    const answered = this.admitRequestNow(input);
    if (answered) return answered;
    const plan = this.admissionPlan(input);
    if (plan.named.length === 0) return { allowed: true, limits: [], degraded: false };
    const { named, keys, limits, reserved, now } = plan;
    // A clock override (tests, replays) always asks the store.
    const leasable = this.allowances && now === undefined ? leasableKey(keys, limits) : undefined;
    const allowance = leasable ? this.allowances!.take(leasable, reserved) : undefined;
    if (allowance) return admittedFrom(allowance, reserved);
    const decision = await this.guard('check', () => this.store.check(named.map(([, r]) => r), now === undefined ? {} : { now }));
    if (!decision) return { allowed: true, limits: [], degraded: true };
    if (leasable && decision.allowed) {
      const rulesOf = (): AllowanceRule[] => named.map(([name, r]) => ({ name, key: r.key, limit: r.limit, windowMs: r.windowMs, tokens: name === 'tokens_per_minute' }));
      this.allowances!.admitted(leasable, decision, reserved, rulesOf);
    }
    return admissionOf(plan, decision);
  }

  /**
   * `admitRequest`'s answer as a plain value when the store answers in this process
   * (RateLimitStore.sync: no promise, no timeout needed); undefined otherwise, then call
   * `admitRequest`. Throws as `admitRequest` rejects.
   */
  admitRequestNow(input: AdmitRequestInput): RequestAdmission | undefined {
    const sync = this.store.sync;
    if (!sync) return undefined;
    const plan = this.admissionPlan(input);
    if (plan.named.length === 0) return { allowed: true, limits: [], degraded: false };
    return admissionOf(plan, sync.check(plan.named.map(([, r]) => r), plan.now === undefined ? {} : { now: plan.now }));
  }

  /** The rules an admission checks, each with the name of its limit (none: nothing to check). */
  private admissionPlan(input: AdmitRequestInput): AdmissionPlan {
    const { userId, tier, override, estimatedInputTokens, maxTokens, now } = checkedAdmit(input);
    const limits = this.limitsFor(tier, override);
    if (limits.tpm > 0 && estimatedInputTokens > limits.tpm) {
      throw new GatewayError(
        'invalid_request',
        `This request's ${estimatedInputTokens} input tokens exceed your limit of ${limits.tpm} tokens per minute`,
        { reason: 'request_exceeds_token_limit' },
      );
    }
    const keys = this.keys.of(userId);
    const reserved = Math.min(estimatedInputTokens + maxTokens, limits.tpm);
    const named: [LimitName, LimitRule][] = [];
    if (limits.rpm > 0) named.push(['requests_per_minute', { key: keys.rpm, limit: limits.rpm, windowMs: MINUTE, cost: 1 }]);
    if (limits.rpd > 0) named.push(['requests_per_day', { key: keys.rpd, limit: limits.rpd, windowMs: DAY, cost: 1 }]);
    if (limits.tpm > 0) named.push(['tokens_per_minute', { key: keys.tpm, limit: limits.tpm, windowMs: MINUTE, cost: reserved }]);
    return { named, keys, limits, reserved, now };
  }

  /**
   * Replaces the reserved tokens with the real count (input + cache + output), freeing the
   * unused part at once. Never throws for a store failure: the request is over, so the
   * failure is logged and counted, and the reservation simply stands until it expires.
   */
  async settle(reservation: TokenReservation, actualTokens: number, now?: number): Promise<void> {
    if (this.settleNow(reservation, actualTokens, now)) return;
    const adjustment = [{ key: reservation.key, windowMs: reservation.windowMs, cost: actualTokens }];
    await this.guard('reconcile', () => this.store.reconcile(reservation.id, adjustment, now === undefined ? {} : { now }), false);
  }

  /** `settle` done at once when it can be (an allowance, nothing to change, an in-process store): true; false when `settle` must be called. */
  settleNow(reservation: TokenReservation, actualTokens: number, now?: number): boolean {
    if (reservation.allowance) {
      // Settled in memory, and always (an allowance waits for its answers to settle); a bad
      // count is charged as reserved, then refused like anywhere else.
      this.allowances?.settle(reservation.allowance, reservation.reserved, isCount(actualTokens) ? actualTokens : reservation.reserved);
      if (!isCount(actualTokens)) tokensSchema.parse(actualTokens);
      return true;
    }
    const cost = isCount(actualTokens) ? actualTokens : tokensSchema.parse(actualTokens);
    if (cost === reservation.reserved) return true;
    const sync = this.store.sync;
    if (!sync) return false;
    sync.reconcile(reservation.id, [{ key: reservation.key, windowMs: reservation.windowMs, cost }], now === undefined ? {} : { now });
    return true;
  }

  /** Takes one of the user's concurrent-stream slots (lease TTL: RATE_LIMIT_LEASE_TTL). */
  async acquireStream(input: StreamInput): Promise<StreamAdmission> {
    const answered = this.acquireStreamNow(input);
    if (answered) return answered;
    const lease = this.streamLease(input);
    if (!lease) return { allowed: true, limits: [], degraded: false };
    const acquiring = this.store.acquire(lease);
    let result: LeaseResult | undefined;
    try {
      result = await this.guard('acquire', () => acquiring);
    } finally {
      // Failed or timed out here, the call may still take the slot in the store: give it
      // back then, or it would be held by nobody until its TTL (a user allowed one or two
      // streams would be locked out that long).
      if (!result) void acquiring.then((late) => (late.allowed ? this.store.release(lease.key, lease.leaseId) : undefined)).catch(() => {});
    }
    if (!result) return { allowed: true, limits: [], degraded: true };
    return streamAdmissionOf(lease, result);
  }

  /** `acquireStream`'s answer as a plain value when the store answers in this process; undefined otherwise (call `acquireStream`). */
  acquireStreamNow(input: StreamInput): StreamAdmission | undefined {
    const sync = this.store.sync;
    if (!sync) return undefined;
    const lease = this.streamLease(input);
    if (!lease) return { allowed: true, limits: [], degraded: false };
    return streamAdmissionOf(lease, sync.acquire(lease));
  }

  /** The lease a stream asks for; undefined when the user has no concurrency limit. */
  private streamLease(input: StreamInput): StreamLease | undefined {
    const { userId, tier, override, leaseId } = checkedStream(input);
    const { concurrent } = this.limitsFor(tier, override);
    if (concurrent === 0) return undefined;
    return { key: this.keys.of(userId).streams, leaseId: leaseId ?? randomUUID(), limit: concurrent, ttlMs: this.config.rateLimitLeaseTtl };
  }

  /** Extends a live lease by its TTL; false when it had lapsed and the cap is now full. */
  async renewStream(lease: StreamLease): Promise<boolean> {
    const result = await this.guard('acquire', () => this.store.acquire(lease), false);
    return result ? result.allowed : true;
  }

  /** Frees a stream slot; store failures are logged and counted, the lease then lapses by TTL. */
  async releaseStream(lease: StreamLease): Promise<void> {
    if (this.releaseStreamNow(lease)) return;
    await this.guard('release', () => this.store.release(lease.key, lease.leaseId), false);
  }

  /** `releaseStream` done at once when the store answers in this process: true; false when `releaseStream` must be called. */
  releaseStreamNow(lease: StreamLease): boolean {
    const sync = this.store.sync;
    if (!sync) return false;
    sync.release(lease.key, lease.leaseId);
    return true;
  }

  /**
   * Pre-authentication limits per client IP (IPv6 grouped by /64). `auth` and `upgrade`
   * count this attempt; `auth_failure` only asks whether the address is still under its
   * failure limit; count failures with `recordAuthFailure`.
   */
  async admitIp(ip: string, bucket: IpBucket, now?: number): Promise<LimitDecision> {
    const limit =
      bucket === 'auth' ? this.config.rateLimitIpAuthPerMin
      : bucket === 'upgrade' ? this.config.rateLimitIpUpgradePerMin
      : this.config.rateLimitAuthFailuresPerMin;
    const name: LimitName = bucket === 'auth' ? 'ip_auth' : bucket === 'upgrade' ? 'ip_upgrade' : 'ip_auth_failures';
    return this.ipCheck({ ip, bucket, limit, name, cost: bucket === 'auth_failure' ? 0 : 1, now });
  }

  /** Counts one failed authentication from `ip` against RATE_LIMIT_AUTH_FAILURES_PER_MIN. */
  async recordAuthFailure(ip: string, now?: number): Promise<LimitDecision> {
    const limit = this.config.rateLimitAuthFailuresPerMin;
    return this.ipCheck({ ip, bucket: 'auth_failure', limit, name: 'ip_auth_failures', cost: 1, now });
  }

  private async ipCheck(o: { ip: string; bucket: IpBucket; limit: number; name: LimitName; cost: number; now: number | undefined }): Promise<LimitDecision> {
    if (o.limit === 0) return { allowed: true, limits: [], degraded: false };
    const rule = { key: `ip:{${ipGroup(isName(o.ip, 64) ? o.ip : ipSchema.parse(o.ip))}}:${o.bucket}`, limit: o.limit, windowMs: MINUTE, cost: o.cost };
    const decision = await this.guard('check', () => this.store.check([rule], o.now === undefined ? {} : { now: o.now }));
    if (!decision) return { allowed: true, limits: [], degraded: true };
    return { allowed: decision.allowed, limits: decision.rules.map((r) => limitStatus(o.name, r)), degraded: false };
  }

  /**
   * Runs a store call under the failure policy. A failure (error or timeout) is logged and
   * counted; then `closed` throws 503 `rate_limiter_unavailable` and `open` returns
   * undefined (callers admit). With `enforce` false (settle, release) it never throws.
   */
  private async guard<T>(operation: string, call: () => Promise<T>, enforce = true): Promise<T | undefined> {
    let timer: NodeJS.Timeout | undefined;
    try {
      // An in-process store answers at once; only a remote one can hang and needs a timeout.
      if (this.store.sync) return await call();
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`rate-limit store did not answer within ${this.timeoutMs} ms`)), this.timeoutMs);
      });
      return await Promise.race([call(), timeout]);
    } catch (err) {
      if (err instanceof TypeError) throw err; // a malformed rule is a bug, not an outage
      const policy = this.config.rateLimitFailurePolicy;
      const e = err as { message?: string; code?: string };
      this.logger?.warn({ operation, policy, error: e.message, code: e.code }, 'rate-limit store unavailable');
      this.failureCounter?.inc({ operation, policy });
      if (enforce && policy === 'closed') {
        throw new GatewayError('unavailable', 'Rate limiting is temporarily unavailable; please retry shortly', {
          reason: 'rate_limiter_unavailable',
          retryAfterSeconds: 1,
          cause: err,
        });
      }
      return undefined;
    } finally {
      clearTimeout(timer);
    }
  }
}
