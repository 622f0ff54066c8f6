/**
 * Allowances: with a store shared by several instances (Redis), a user who keeps this
 * instance busy has requests and tokens leased in bulk, so most of their requests are
 * admitted from memory instead of one store call each (and one more to settle).
 *
 * Never more than the limit, on any number of instances: a lease is an ordinary admission
 * of Q requests and T tokens, checked atomically against the user's limits like any other,
 * and recorded with its entries stamped at the END of the lease's period (`aheadMs`). So the
 * leased units count for every instance from the moment they are leased, and each one used
 * during the period stays counted a full window after its use. When the period ends (or the
 * allowance runs out) the entries are reconciled to what was really used: requests admitted,
 * tokens of settled answers; the rest is free again at once.
 *
 * The price: while an allowance is live, its unused units are held by this instance. That is
 * why one is only leased for a user with demand (`minDemand` admissions on this instance
 * within a period) and while every limit keeps `headroom` times the lease free; near a limit
 * every request is checked against the store one by one, exactly as without allowances.
 */
import type { CostAdjustment, Decision, LimitRule } from '../engine/ratelimit/port.js';
import type { LimitName } from './limiter.js';

export interface AllowancePolicy {
  /** How long one allowance is used for, in ms. */
  periodMs: number;
  /** Admissions of one user on this instance within a period before it leases. */
  minDemand: number;
  /** Lease only while every limit keeps this many times the lease free. */
  headroom: number;
}

export const DEFAULT_ALLOWANCE_POLICY: AllowancePolicy = { periodMs: 1000, minDemand: 4, headroom: 8 };

/** An allowance stops admitting this long before its period ends (timers and clocks are not exact). */
const END_MARGIN_MS = 5;

/** The users tracked at most; past it, users without a live allowance are forgotten. */
const MAX_USERS = 10_000;

/** A rule of the user's request check, in the order the limiter builds them. */
export interface AllowanceRule {
  name: LimitName;
  key: string;
  limit: number;
  windowMs: number;
  /** True for the tokens rule (its cost is tokens), false for request counts. */
  tokens: boolean;
}

export interface Allowance {
  readonly user: string;
  /** The store's reservation id of the leased entries. */
  readonly id: string;
  readonly rules: readonly AllowanceRule[];
  /** What the lease check said (remaining after the lease), per rule. */
  readonly leasedAt: Decision['rules'];
  readonly leasedRequests: number;
  readonly leasedTokens: number;
  requestsLeft: number;
  tokensLeft: number;
  admitted: number;
  /** Admitted with tokens reserved and not yet settled. */
  inFlight: number;
  /** The clock's time when it stops admitting: a few ms before its period ends. */
  readonly endsAt: number;
  closed: boolean;
  timer: NodeJS.Timeout | undefined;
}

/**
 * What rule `i` of `allowance` has free as this instance sees it: what the lease left, plus
 * what the allowance has not used yet (free for everyone once it is given back).
 */
export function freeOf(allowance: Allowance, i: number): number {
  return allowance.leasedAt[i]!.remaining + (allowance.rules[i]!.tokens ? allowance.tokensLeft : allowance.requestsLeft);
}

/** The rules charged `requests` requests and `tokens` tokens: a lease, or what was used of it. */
function charged(rules: readonly AllowanceRule[], requests: number, tokens: number): LimitRule[] {
  return rules.map((r) => ({ key: r.key, limit: r.limit, windowMs: r.windowMs, cost: r.tokens ? tokens : requests }));
}

interface Demand {
  periodStart: number;
  count: number;
  allowance: Allowance | undefined;
  leasing: boolean;
  /** A lease was refused (or failed): none is asked for again before this time. */
  refusedUntil: number;
}

export interface AllowanceStore {
  /** The store's check through the limiter's failure policy; undefined when it failed. */
  check(rules: LimitRule[], aheadMs: number): Promise<Decision | undefined>;
  /** The store's reconcile through the failure policy (never throws). */
  reconcile(id: string, adjustments: CostAdjustment[]): Promise<void>;
}

export class Allowances {
  private readonly users = new Map<string, Demand>();
  private readonly finishing = new Set<Promise<void>>();
  private readonly pending = new Set<Promise<void>>();
  private closing = false;

  constructor(
    private readonly store: AllowanceStore,
    private readonly policy: AllowancePolicy = DEFAULT_ALLOWANCE_POLICY,
    private readonly clock: () => number = () => performance.now(),
  ) {}

  /**
   * Admits one request from the user's live allowance, if it has one with room for one
   * request and `tokens` tokens; undefined otherwise (check the store). With a quarter of
   * its units or of its period left, the next allowance is leased now, so a steady user
   * never falls back to one store call per request.
   */
  take(user: string, tokens: number): Allowance | undefined {
    const demand = this.users.get(user);
    const allowance = demand?.allowance;
    if (!demand || !allowance) return undefined;
    const hasTokens = allowance.rules.some((r) => r.tokens);
    // Past its period (its timer may run late on a busy loop), or spent: give back what is
    // left now. A use after the period could fall after the entries' stamp.
    if (this.clock() >= allowance.endsAt || allowance.requestsLeft < 1 || (hasTokens && allowance.tokensLeft < tokens)) {
      this.end(allowance);
      return undefined;
    }
    allowance.requestsLeft--;
    allowance.admitted++;
    if (hasTokens && tokens > 0) {
      allowance.tokensLeft -= tokens;
      allowance.inFlight++; // settled by the caller (nothing to settle when nothing is reserved)
    }
    const now = this.count(demand);
    if (!demand.leasing && (allowance.requestsLeft * 4 < allowance.leasedRequests || now > allowance.endsAt - this.policy.periodMs / 4)) {
      this.plan(user, demand, allowance.rules, allowance.rules.map((_, i) => freeOf(allowance, i)), tokens);
    }
    return allowance;
  }

  /**
   * A request of `user` was admitted by the store (`decision`, with the request's `tokens`):
   * counts the demand and, past `minDemand` with room to spare, leases an allowance (in the
   * background; this request does not wait).
   */
  admitted(user: string, decision: Decision, tokens: number, rulesOf: () => readonly AllowanceRule[]): void {
    let demand = this.users.get(user);
    if (!demand) {
      if (this.users.size >= MAX_USERS) this.forgetIdle();
      demand = { periodStart: this.clock(), count: 0, allowance: undefined, leasing: false, refusedUntil: 0 };
      this.users.set(user, demand);
    }
    this.count(demand);
    if (demand.count < this.policy.minDemand || demand.leasing || demand.allowance) return;
    this.plan(user, demand, rulesOf(), decision.rules.map((r) => r.remaining), tokens);
  }

  /** Counts one admission in the demand's current period; returns the clock's now. */
  private count(demand: Demand): number {
    const now = this.clock();
    if (now - demand.periodStart >= this.policy.periodMs) {
      demand.periodStart = now;
      demand.count = 0;
    }
    demand.count++;
    return now;
  }

  /**
   * Leases what a period at the rate seen so far needs, with half again to spare, within
   * `free / headroom` of every limit (`free`: what each limit has left, per rule).
   */
  private plan(user: string, demand: Demand, rules: readonly AllowanceRule[], free: number[], tokens: number): void {
    const now = this.clock();
    // After a refusal, a period of checks one by one: no store call per request for leases
    // that the limits cannot give (`free` is what this instance last saw: it may be stale).
    if (this.closing || now < demand.refusedUntil) return;
    const elapsed = Math.max(now - demand.periodStart, this.policy.periodMs / 10);
    let requests = Math.max(this.policy.minDemand, Math.round((1.5 * demand.count * this.policy.periodMs) / elapsed));
    for (let i = 0; i < rules.length; i++) {
      const room = Math.floor(free[i]! / this.policy.headroom);
      requests = Math.min(requests, rules[i]!.tokens ? Math.floor(room / Math.max(1, tokens)) : room);
    }
    if (requests < 2) return;
    demand.leasing = true;
    const leasing: Promise<void> = this.lease(user, demand, rules, requests, requests * tokens)
      .catch(() => {}) // the store's failures are logged and counted by the limiter's guard
      .finally(() => {
        demand.leasing = false;
        this.pending.delete(leasing);
      });
    this.pending.add(leasing);
  }

  /** An answer admitted from `allowance` settled with `actual` tokens (it reserved `reserved`). */
  settle(allowance: Allowance, reserved: number, actual: number): void {
    allowance.tokensLeft += reserved - actual;
    allowance.inFlight--;
    // Ended while answers were running: reconciled again with their real tokens.
    if (allowance.closed && allowance.inFlight === 0) this.finish(allowance);
  }

  /** Ends every allowance, leases no more, and waits for the reconciliations (shutdown). */
  async close(): Promise<void> {
    this.closing = true;
    await Promise.all(this.pending);
    for (const demand of this.users.values()) if (demand.allowance) this.end(demand.allowance);
    await Promise.all(this.finishing);
  }

  private async lease(user: string, demand: Demand, rules: readonly AllowanceRule[], requests: number, tokens: number): Promise<void> {
    // The period is timed from before the call: the store stamps the entries at its own
    // `now` (read later, while the call runs) plus the period, so every use within the
    // period here falls before that stamp.
    const start = this.clock();
    const decision = await this.store.check(charged(rules, requests, tokens), this.policy.periodMs);
    if (!decision?.allowed || !decision.reservation) {
      demand.refusedUntil = this.clock() + this.policy.periodMs;
      return;
    }
    const endsAt = start + this.policy.periodMs - END_MARGIN_MS;
    const allowance: Allowance = {
      user,
      id: decision.reservation,
      rules,
      leasedAt: decision.rules,
      leasedRequests: requests,
      leasedTokens: tokens,
      requestsLeft: requests,
      tokensLeft: tokens,
      admitted: 0,
      inFlight: 0,
      endsAt,
      closed: false,
      timer: undefined,
    };
    const left = endsAt - this.clock();
    if (left <= 0 || this.closing || this.users.get(user) !== demand) {
      this.finish(allowance); // unused: all of it back
      return;
    }
    allowance.timer = setTimeout(() => this.end(allowance), left);
    allowance.timer.unref();
    if (demand.allowance) this.end(demand.allowance); // leased ahead: the new one takes over
    demand.allowance = allowance;
  }

  /**
   * No more admissions from it. Reconciled at once (answers still running count their
   * reserved tokens), and again when the last of them settles.
   */
  private end(allowance: Allowance): void {
    if (allowance.closed) return;
    allowance.closed = true;
    clearTimeout(allowance.timer);
    const demand = this.users.get(allowance.user);
    if (demand?.allowance === allowance) demand.allowance = undefined;
    this.finish(allowance);
  }

  /**
   * Reconciles the leased entries to what was used: the requests admitted, and the tokens
   * of settled answers plus those reserved by answers still running.
   */
  private finish(allowance: Allowance): void {
    const used = charged(allowance.rules, allowance.admitted, allowance.leasedTokens - allowance.tokensLeft);
    const done: Promise<void> = this.store
      .reconcile(allowance.id, used)
      .catch(() => {}) // logged and counted by the limiter's guard
      .finally(() => this.finishing.delete(done));
    this.finishing.add(done);
  }

  private forgetIdle(): void {
    for (const [user, demand] of this.users) if (!demand.allowance && !demand.leasing) this.users.delete(user);
  }
}
