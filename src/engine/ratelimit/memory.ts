/**
 * In-process sliding-log store: the real default for a single instance.
 *
 * Node runs one check at a time on its event loop and `check` never awaits midway, so
 * every check is atomic without locks. Memory stays bounded: expired entries are dropped
 * as keys are touched, idle keys are swept at most every `sweepIntervalMs`, and past
 * `maxKeys` the least recently used keys (to the second) are forgotten (which forgets their
 * usage too: the price of a bound, only paid under a flood of distinct keys).
 */
import type { CheckOptions, CostAdjustment, Decision, LeaseRequest, LeaseResult, LimitRule, RateLimitStore, RuleOutcome, SyncRateLimitOperations } from './port.js';
import { idGenerator, needed, validateAdjustments, validateLease, validateRules } from './validate.js';

/**
 * One limit's entries, oldest first, as parallel arrays: the stamps and costs in typed arrays,
 * the reservation ids in a plain one. No object per entry: a busy user's daily log holds
 * thousands of entries, which as objects cost about 100 bytes each and had to be traced by
 * every major garbage collection; here an entry is 16 bytes of numbers and a reference to its
 * reservation's id (shared by the limits it was checked against).
 */
class Log {
  ts = new Float64Array(8);
  cost = new Float64Array(8);
  ids: string[] = [];
  /** Entries before `head` are expired and awaiting compaction; `end` is one past the newest. */
  head = 0;
  end = 0;
  /** Sum of the costs of the entries in [head, end). */
  used = 0;
  /** When the store last moved this log to the most-recently-used end of its map. */
  movedAt = 0;

  constructor(public windowMs: number) {}

  /** The newest entry's stamp, or undefined when no entry counts. */
  newest(): number | undefined {
    return this.head < this.end ? this.ts[this.end - 1] : undefined;
  }

  /** Drops entries at or before `cutoff` (they no longer count) and compacts now and then. */
  prune(cutoff: number): void {
    while (this.head < this.end && this.ts[this.head]! <= cutoff) {
      this.used -= this.cost[this.head]!;
      this.head++;
    }
    if (this.head > 32 && this.head * 2 > this.end) this.compact();
    else if (this.head === this.end) this.head = this.end = this.ids.length = 0;
  }

  /** Moves the live entries to the front; a burst's room is given back once it has expired. */
  private compact(): void {
    const live = this.end - this.head;
    const room = Math.max(8, live * 2);
    if (this.ts.length > room * 2) {
      this.ts = resized(this.ts, this.head, this.end, room);
      this.cost = resized(this.cost, this.head, this.end, room);
    } else {
      this.ts.copyWithin(0, this.head, this.end);
      this.cost.copyWithin(0, this.head, this.end);
    }
    this.ids.copyWithin(0, this.head, this.end);
    this.ids.length = live;
    this.head = 0;
    this.end = live;
  }

  /** Adds an entry in stamp order (stamps ahead of now may precede a later-made entry). */
  insert(ts: number, cost: number, id: string): void {
    if (this.end === this.ts.length) {
      this.ts = resized(this.ts, 0, this.end, this.end * 2);
      this.cost = resized(this.cost, 0, this.end, this.end * 2);
    }
    let i = this.end;
    while (i > this.head && this.ts[i - 1]! > ts) i--;
    if (i < this.end) {
      this.ts.copyWithin(i + 1, i, this.end);
      this.cost.copyWithin(i + 1, i, this.end);
      this.ids.splice(i, 0, id);
    } else {
      this.ids[i] = id;
    }
    this.ts[i] = ts;
    this.cost[i] = cost;
    this.end++;
    this.used += cost;
  }

  /** Replaces the cost of reservation `id`'s entry (removed at 0), if it is here. */
  adjust(id: string, cost: number): void {
    // Reconciliation follows its check closely, so the entry is near the end.
    for (let i = this.end - 1; i >= this.head; i--) {
      if (this.ids[i] !== id) continue;
      this.used += cost - this.cost[i]!;
      if (cost === 0) {
        this.ts.copyWithin(i, i + 1, this.end);
        this.cost.copyWithin(i, i + 1, this.end);
        this.ids.splice(i, 1);
        this.end--;
      } else {
        this.cost[i] = cost;
      }
      return;
    }
  }
}

/** A new array of `size` holding `a[from, to)` at its start. */
function resized(a: Float64Array, from: number, to: number, size: number) {
  const b = new Float64Array(size);
  b.set(a.subarray(from, to));
  return b;
}

/** How stale the least-recently-used order of logs may be (see `log()`). */
const LRU_RESOLUTION_MS = 1000;

export interface MemoryRateLimitStoreOptions {
  /** Most keys (logs plus lease sets) kept; least recently used beyond it are dropped. Default 100 000. */
  maxKeys?: number;
  /** How often idle keys are swept, in ms of the store's clock. Default 10 000. */
  sweepIntervalMs?: number;
  clock?: () => number;
}

export class MemoryRateLimitStore implements RateLimitStore {
  /** Every operation answers at once; the async ones below only wrap these. */
  readonly sync: SyncRateLimitOperations = {
    check: (rules, options = {}) => this.checkNow(rules, options),
    reconcile: (reservation, adjustments, options = {}) => this.reconcileNow(reservation, adjustments, options),
    acquire: (request) => this.acquireNow(request),
    release: (key, leaseId) => this.releaseNow(key, leaseId),
  };
  private readonly logs = new Map<string, Log>();
  private readonly leases = new Map<string, Map<string, number>>();
  private readonly maxKeys: number;
  private readonly sweepIntervalMs: number;
  private readonly clock: () => number;
  private lastSweep = 0;
  private readonly nextId = idGenerator();

  constructor(options: MemoryRateLimitStoreOptions = {}) {
    this.maxKeys = options.maxKeys ?? 100_000;
    this.sweepIntervalMs = options.sweepIntervalMs ?? 10_000;
    this.clock = options.clock ?? Date.now;
  }

  /** Number of keys held (for tests and metrics). */
  get size(): number {
    return this.logs.size + this.leases.size;
  }

  async check(rules: LimitRule[], options: CheckOptions = {}): Promise<Decision> {
    return this.checkNow(rules, options);
  }

  async reconcile(reservation: string, adjustments: CostAdjustment[], options: CheckOptions = {}): Promise<void> {
    this.reconcileNow(reservation, adjustments, options);
  }

  async acquire(request: LeaseRequest): Promise<LeaseResult> {
    return this.acquireNow(request);
  }

  async release(key: string, leaseId: string): Promise<void> {
    this.releaseNow(key, leaseId);
  }

  private checkNow(rules: LimitRule[], options: CheckOptions): Decision {
    validateRules(rules, options.now, options.aheadMs);
    const now = options.now ?? this.clock();
    const stamp = now + (options.aheadMs ?? 0);
    this.maybeSweep(now);
    const logs = rules.map((rule) => this.log(rule, now));
    let allowed = true;
    for (let i = 0; i < rules.length; i++) if (logs[i]!.used + needed(rules[i]!) > rules[i]!.limit) allowed = false;
    let reservation: string | undefined;
    if (allowed) {
      for (let i = 0; i < rules.length; i++) {
        const rule = rules[i]!;
        if (rule.cost === 0) continue;
        reservation ??= this.nextId();
        logs[i]!.insert(stamp, rule.cost, reservation);
      }
    }
    const outcomes = rules.map((rule, i) => outcome(rule, logs[i]!, now, allowed));
    return reservation === undefined ? { allowed, rules: outcomes } : { allowed, reservation, rules: outcomes };
  }

  private reconcileNow(reservation: string, adjustments: CostAdjustment[], options: CheckOptions): void {
    validateAdjustments(reservation, adjustments, options.now);
    const now = options.now ?? this.clock();
    for (const adjustment of adjustments) {
      const log = this.logs.get(adjustment.key);
      if (!log) continue;
      log.prune(now - adjustment.windowMs);
      log.adjust(reservation, adjustment.cost);
    }
  }

  private acquireNow(request: LeaseRequest): LeaseResult {
    validateLease(request);
    const now = request.now ?? this.clock();
    this.maybeSweep(now);
    let set = this.leases.get(request.key);
    if (set) {
      this.leases.delete(request.key);
    } else {
      this.makeRoom();
      set = new Map();
    }
    this.leases.set(request.key, set);
    // Leases are kept in the order they expire (a renewal moves to the end; one TTL per key in
    // practice), so the expired ones are at the front: dropping them costs nothing per live
    // lease. A set that looks full is swept whole, in case TTLs differed.
    for (const [id, expiresAt] of set) {
      if (expiresAt > now) break;
      set.delete(id);
    }
    if (set.size >= request.limit && !set.has(request.leaseId)) {
      for (const [id, expiresAt] of set) if (expiresAt <= now) set.delete(id);
    }
    const allowed = set.has(request.leaseId) || set.size < request.limit;
    if (allowed) {
      set.delete(request.leaseId);
      set.set(request.leaseId, now + request.ttlMs);
    }
    return { allowed, active: set.size };
  }

  private releaseNow(key: string, leaseId: string): void {
    const set = this.leases.get(key);
    if (!set) return;
    set.delete(leaseId);
    if (set.size === 0) this.leases.delete(key);
  }

  async close(): Promise<void> {
    this.logs.clear();
    this.leases.clear();
  }

  /**
   * The pruned log for a rule, moved to the most-recently-used end of `logs` unless it was
   * moved there less than a second ago: the eviction order is exact to a second, and a busy
   * key costs one lookup per check instead of a lookup, a delete and an insert.
   */
  private log(rule: LimitRule, now: number): Log {
    let log = this.logs.get(rule.key);
    if (!log) {
      this.makeRoom();
      log = new Log(rule.windowMs);
      log.movedAt = now;
      this.logs.set(rule.key, log);
    } else if (now - log.movedAt >= LRU_RESOLUTION_MS || now < log.movedAt) {
      this.logs.delete(rule.key);
      this.logs.set(rule.key, log);
      log.movedAt = now;
    }
    log.windowMs = rule.windowMs;
    log.prune(now - rule.windowMs);
    return log;
  }

  private makeRoom(): void {
    if (this.size < this.maxKeys) return;
    this.sweep(this.clock());
    for (const map of [this.logs, this.leases] as Map<string, unknown>[]) {
      for (const key of map.keys()) {
        if (this.size < this.maxKeys) return;
        map.delete(key);
      }
    }
  }

  private maybeSweep(now: number): void {
    if (now - this.lastSweep >= this.sweepIntervalMs || now < this.lastSweep) this.sweep(now);
  }

  /** Drops every log whose entries have all expired and every lease set with no live lease. */
  private sweep(now: number): void {
    this.lastSweep = now;
    for (const [key, log] of this.logs) {
      const newest = log.newest();
      if (newest === undefined || newest + log.windowMs <= now) this.logs.delete(key);
    }
    for (const [key, set] of this.leases) {
      for (const [id, expiresAt] of set) if (expiresAt <= now) set.delete(id);
      if (set.size === 0) this.leases.delete(key);
    }
  }
}

function outcome(rule: LimitRule, log: Log, now: number, allowed: boolean): RuleOutcome {
  const newest = log.newest();
  const resetAtMs = newest !== undefined ? newest + rule.windowMs : now;
  const remaining = Math.max(0, rule.limit - log.used);
  return { key: rule.key, limit: rule.limit, remaining, resetAtMs, retryAfterMs: retryAfter(rule, log, now, allowed) };
}

/** 0 when the rule has room; else the ms until enough old entries expire for its cost to fit. */
function retryAfter(rule: LimitRule, log: Log, now: number, allowed: boolean): number {
  const need = needed(rule);
  if (allowed || log.used + need <= rule.limit) return 0;
  if (need > rule.limit) return rule.windowMs;
  // Walk the oldest entries until enough of them have expired for `need` to fit.
  const excess = log.used + need - rule.limit;
  let freed = 0;
  for (let i = log.head; i < log.end; i++) {
    freed += log.cost[i]!;
    if (freed >= excess) return Math.max(1, log.ts[i]! + rule.windowMs - now);
  }
  return rule.windowMs;
}
