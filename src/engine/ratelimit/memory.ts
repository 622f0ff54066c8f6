/**
 * In-process sliding-log store: the real default for a single instance.
 *
 * Node runs one check at a time on its event loop and `check` never awaits midway, so
 * every check is atomic without locks. Memory stays bounded: expired entries are dropped
 * as keys are touched, idle keys are swept at most every `sweepIntervalMs`, and past
 * `maxKeys` the least recently used keys are forgotten (which forgets their usage too:
 * the price of a bound, only paid under a flood of distinct keys).
 */
import type { CheckOptions, CostAdjustment, Decision, LeaseRequest, LeaseResult, LimitRule, RateLimitStore, RuleOutcome } from './port.js';
import { idGenerator, needed, validateAdjustments, validateLease, validateRules } from './validate.js';

interface Entry {
  ts: number;
  cost: number;
  id: string;
}

interface Log {
  /** Sorted by ts; entries before `head` are expired and awaiting compaction. */
  entries: Entry[];
  head: number;
  /** Sum of the costs of entries[head..]. */
  used: number;
  windowMs: number;
}

export interface MemoryRateLimitStoreOptions {
  /** Most keys (logs plus lease sets) kept; least recently used beyond it are dropped. Default 100 000. */
  maxKeys?: number;
  /** How often idle keys are swept, in ms of the store's clock. Default 10 000. */
  sweepIntervalMs?: number;
  clock?: () => number;
}

export class MemoryRateLimitStore implements RateLimitStore {
  readonly inProcess = true;
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
        insert(logs[i]!, { ts: stamp, cost: rule.cost, id: reservation });
      }
    }
    const outcomes = rules.map((rule, i) => outcome(rule, logs[i]!, now, allowed));
    return reservation === undefined ? { allowed, rules: outcomes } : { allowed, reservation, rules: outcomes };
  }

  async reconcile(reservation: string, adjustments: CostAdjustment[], options: CheckOptions = {}): Promise<void> {
    validateAdjustments(reservation, adjustments, options.now);
    const now = options.now ?? this.clock();
    for (const adjustment of adjustments) {
      const log = this.logs.get(adjustment.key);
      if (!log) continue;
      prune(log, now - adjustment.windowMs);
      // Reconciliation follows its check closely, so the entry is near the end.
      for (let i = log.entries.length - 1; i >= log.head; i--) {
        const entry = log.entries[i]!;
        if (entry.id !== reservation) continue;
        log.used += adjustment.cost - entry.cost;
        if (adjustment.cost === 0) log.entries.splice(i, 1);
        else entry.cost = adjustment.cost;
        break;
      }
    }
  }

  async acquire(request: LeaseRequest): Promise<LeaseResult> {
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
    for (const [id, expiresAt] of set) if (expiresAt <= now) set.delete(id);
    const allowed = set.has(request.leaseId) || set.size < request.limit;
    if (allowed) set.set(request.leaseId, now + request.ttlMs);
    return { allowed, active: set.size };
  }

  async release(key: string, leaseId: string): Promise<void> {
    const set = this.leases.get(key);
    if (!set) return;
    set.delete(leaseId);
    if (set.size === 0) this.leases.delete(key);
  }

  async close(): Promise<void> {
    this.logs.clear();
    this.leases.clear();
  }

  /** The pruned log for a rule, moved to the most-recently-used end. */
  private log(rule: LimitRule, now: number): Log {
    let log = this.logs.get(rule.key);
    if (log) {
      this.logs.delete(rule.key);
    } else {
      this.makeRoom();
      log = { entries: [], head: 0, used: 0, windowMs: rule.windowMs };
    }
    this.logs.set(rule.key, log);
    log.windowMs = rule.windowMs;
    prune(log, now - rule.windowMs);
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
      const last = log.entries[log.entries.length - 1];
      if (!last || log.head >= log.entries.length || last.ts + log.windowMs <= now) this.logs.delete(key);
    }
    for (const [key, set] of this.leases) {
      for (const [id, expiresAt] of set) if (expiresAt <= now) set.delete(id);
      if (set.size === 0) this.leases.delete(key);
    }
  }
}

/** Drops entries at or before `cutoff` (they no longer count) and compacts now and then. */
function prune(log: Log, cutoff: number): void {
  const { entries } = log;
  while (log.head < entries.length && entries[log.head]!.ts <= cutoff) {
    log.used -= entries[log.head]!.cost;
    log.head++;
  }
  if (log.head > 32 && log.head * 2 > entries.length) {
    log.entries = entries.slice(log.head);
    log.head = 0;
  }
}

function insert(log: Log, entry: Entry): void {
  const { entries } = log;
  let i = entries.length;
  while (i > log.head && entries[i - 1]!.ts > entry.ts) i--;
  if (i === entries.length) entries.push(entry);
  else entries.splice(i, 0, entry);
  log.used += entry.cost;
}

function outcome(rule: LimitRule, log: Log, now: number, allowed: boolean): RuleOutcome {
  const last = log.entries[log.entries.length - 1];
  const resetAtMs = last && log.head < log.entries.length ? last.ts + rule.windowMs : now;
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
  for (let i = log.head; i < log.entries.length; i++) {
    const entry = log.entries[i]!;
    freed += entry.cost;
    if (freed >= excess) return Math.max(1, entry.ts + rule.windowMs - now);
  }
  return rule.windowMs;
}
