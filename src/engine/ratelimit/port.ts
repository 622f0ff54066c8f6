/**
 * The rate-limit store: exact sliding-window logs with costs, and concurrency leases.
 *
 * Every admission is recorded as one entry (timestamp, cost, id) in the log of each rule
 * key it was checked against. A rule's usage at time `now` is the sum of the costs of its
 * entries with `timestamp > now - windowMs`; an entry stops counting at exactly
 * `timestamp + windowMs`. There is no bucketing, so "at most `limit` in ANY window of
 * `windowMs`" holds exactly, including bursts across what a fixed window would call a
 * boundary.
 *
 * Implementations (memory.ts, redis.ts) all pass test/ratelimit/contract.ts.
 */

/** One limit to check: at most `limit` units of cost in any window of `windowMs` for `key`. */
export interface LimitRule {
  /**
   * Opaque key, e.g. `u:{usr_1}:rpm` (braces: a Redis Cluster hash tag). Keys in one
   * `check` must be distinct, and a key must always be used with the same `windowMs`.
   */
  key: string;
  /** Positive integer. */
  limit: number;
  /** Positive integer milliseconds. */
  windowMs: number;
  /**
   * Non-negative integer. Cost 0 is a probe: admitted while the window has room for at
   * least one unit, and nothing is recorded for that rule.
   */
  cost: number;
}

/** What one rule said about a check. */
export interface RuleOutcome {
  key: string;
  limit: number;
  /** `limit - used`, after recording this admission when allowed; never negative. */
  remaining: number;
  /** Epoch ms when every entry now in the window (this one included) has expired: the limit is fully replenished. */
  resetAtMs: number;
  /**
   * 0 when this rule had room. Otherwise the ms until enough old entries expire for the
   * cost to fit (at least 1). A cost larger than `limit` can never fit: then `windowMs`.
   */
  retryAfterMs: number;
}

export interface Decision {
  allowed: boolean;
  /** Id of the recorded entries, to `reconcile` later; absent when refused or nothing was recorded. */
  reservation?: string;
  /** One outcome per rule, in the order given. */
  rules: RuleOutcome[];
}

export interface CheckOptions {
  /**
   * Clock override in epoch ms (tests, replays). Without it the memory store uses
   * `Date.now()` and the Redis store uses the Redis server's clock, so every instance
   * shares one clock. Per key, `now` should not go backwards.
   */
  now?: number;
  /**
   * `check` only: stamp the recorded entries this many ms after `now` (default 0). They
   * count at once and until `now + aheadMs + windowMs`: units leased now to be used over
   * the next `aheadMs` stay counted a full window after their last possible use.
   */
  aheadMs?: number;
}

/** The real cost of a reserved admission for one rule key. */
export interface CostAdjustment {
  key: string;
  windowMs: number;
  /** Non-negative integer; replaces the reserved cost. 0 removes the entry. */
  cost: number;
}

export interface LeaseRequest {
  /** Scope of the cap, e.g. `u:{usr_1}:streams`. */
  key: string;
  /** At most this many live leases per key. */
  limit: number;
  /** Unique per stream; acquiring an id that is already live renews it (heartbeat). */
  leaseId: string;
  /** The lease lapses this long after its last acquire unless released first. */
  ttlMs: number;
  now?: number;
}

export interface LeaseResult {
  allowed: boolean;
  /** Live leases for the key after this call (including this one when allowed). */
  active: number;
}

/** `check`, `reconcile`, `acquire` and `release` of RateLimitStore, answered without a promise. */
export interface SyncRateLimitOperations {
  check(rules: LimitRule[], options?: CheckOptions): Decision;
  reconcile(reservation: string, adjustments: CostAdjustment[], options?: CheckOptions): void;
  acquire(request: LeaseRequest): LeaseResult;
  release(key: string, leaseId: string): void;
}

export interface RateLimitStore {
  /**
   * Set by a store that lives in this process and answers without I/O (it cannot hang, so
   * callers need no timeout): the same operations as plain calls, for the limiter's
   * per-request paths, which then make no promise for them. They cannot fail: they throw only
   * a TypeError for malformed input (a caller's bug), so the limiter's failure policy never
   * applies to them.
   */
  readonly sync?: SyncRateLimitOperations;
  /**
   * All-or-nothing admission, atomic across every rule: admitted only when every rule has
   * room for its cost, and then recorded in every rule (one entry per rule, one shared
   * reservation id). A refusal records nothing anywhere. Concurrent checks, from any
   * number of callers or instances sharing the store, never admit more than the limit.
   */
  check(rules: LimitRule[], options?: CheckOptions): Promise<Decision>;
  /**
   * Replaces the reserved cost of `reservation` in each listed rule with the real cost
   * (e.g. tokens reserved from max_tokens → tokens used), freeing the difference at once
   * (or charging more when the real cost is higher; that may push usage past the limit,
   * which then delays later admissions). Entries already expired, or never recorded, are
   * ignored. The entry keeps its original timestamp.
   */
  reconcile(reservation: string, adjustments: CostAdjustment[], options?: CheckOptions): Promise<void>;
  /**
   * Takes one of `limit` concurrent slots for `key`, or renews `leaseId` if it is live.
   * Leases lapse after `ttlMs`, so a crashed instance's streams free their slots.
   */
  acquire(request: LeaseRequest): Promise<LeaseResult>;
  /** Frees a lease at once; unknown or lapsed ids are ignored. */
  release(key: string, leaseId: string): Promise<void>;
  /** Frees what this store owns (timers, memory). A shared Redis client is left open. */
  close(): Promise<void>;
}
