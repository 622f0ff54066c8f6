/**
 * Redis sliding-log store: one Lua script per operation, so each check is atomic across
 * every instance sharing the Redis (a script runs alone on the server).
 *
 * Per rule key K: a sorted set `PREFIX log:K` (member = entry id, score = timestamp) and a
 * hash `PREFIX cost:K` (entry id → cost, plus `#` → the running sum and `>` → the latest
 * entry's timestamp); leases live in
 * sorted sets `PREFIX lease:K` (member = lease id, score = expiry). Pruning pops only expired
 * entries, so a check costs O(rules × expired) rather than O(entries). Both keys get
 * PEXPIRE = a window past the latest entry on every write, so an idle key vanishes once its
 * last entry has.
 * Keys of one check must hash to one slot on Redis Cluster: use a hash tag (`u:{id}:rpm`).
 */
import type { Redis } from 'ioredis';
import type { CheckOptions, CostAdjustment, Decision, LeaseRequest, LeaseResult, LimitRule, RateLimitStore, RuleOutcome } from './port.js';
import { idGenerator, validateAdjustments, validateLease, validateRules } from './validate.js';

/**
 * Shared by every script: the clock, and popping expired entries. `prune` returns the
 * running sum without those entries, whether any were popped (the caller writes the sum
 * back, once, with its own change, when it changed) and the latest stamp recorded (`>`).
 */
const PRELUDE = `
local function clock(arg)
  local now = tonumber(arg)
  if now then return now end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function prune(log, costs, cutoff)
  local head = redis.call('HMGET', costs, '#', '>')
  local used, latest = tonumber(head[1] or '0'), tonumber(head[2] or '0')
  local expired = redis.call('ZRANGEBYSCORE', log, '-inf', cutoff)
  if #expired == 0 then return used, false, latest end
  for s = 1, #expired, 500 do
    local batch = {}
    for j = s, math.min(s + 499, #expired) do batch[#batch + 1] = expired[j] end
    local c = redis.call('HMGET', costs, unpack(batch))
    for j = 1, #c do used = used - (tonumber(c[j]) or 0) end
    redis.call('HDEL', costs, unpack(batch))
  end
  redis.call('ZREMRANGEBYSCORE', log, '-inf', cutoff)
  return used, true, latest
end
`;

/**
 * KEYS: log, costs per rule. ARGV: now|'', aheadMs, id, then limit, windowMs, cost per rule.
 * Admitted entries are stamped `now + aheadMs`. The costs hash keeps the latest stamp in
 * `>`, so an admitted rule's reset and both keys' expiry (a full window after the latest
 * entry) are known without reading the log; only a refusal reads its newest and oldest.
 */
const CHECK = `${PRELUDE}
local now = clock(ARGV[1])
local stamp = now + tonumber(ARGV[2])
local id = ARGV[3]
local n = #KEYS / 2
local used, dirty, latest, allowed = {}, {}, {}, 1
for i = 1, n do
  local limit, window, cost = tonumber(ARGV[3 * i + 1]), tonumber(ARGV[3 * i + 2]), tonumber(ARGV[3 * i + 3])
  used[i], dirty[i], latest[i] = prune(KEYS[2 * i - 1], KEYS[2 * i], now - window)
  if used[i] + math.max(cost, 1) > limit then allowed = 0 end
end
local out = { allowed, now }
for i = 1, n do
  local log, costs = KEYS[2 * i - 1], KEYS[2 * i]
  local limit, window, cost = tonumber(ARGV[3 * i + 1]), tonumber(ARGV[3 * i + 2]), tonumber(ARGV[3 * i + 3])
  local reset = now
  if allowed == 1 and cost > 0 then
    redis.call('ZADD', log, stamp, id)
    used[i] = used[i] + cost
    local last = math.max(latest[i], stamp)
    redis.call('HSET', costs, id, cost, '#', used[i], '>', last)
    redis.call('PEXPIRE', log, last - now + window)
    redis.call('PEXPIRE', costs, last - now + window)
    reset = last + window
  else
    if dirty[i] then redis.call('HSET', costs, '#', used[i]) end
    local newest = redis.call('ZRANGE', log, -1, -1, 'WITHSCORES')
    if #newest == 2 then reset = tonumber(newest[2]) + window end
  end
  local need = math.max(cost, 1)
  local retry = 0
  if allowed == 0 and used[i] + need > limit then
    retry = window
    if need <= limit then
      local excess, freed, start = used[i] + need - limit, 0, 0
      while retry == window do
        local batch = redis.call('ZRANGE', log, start, start + 99, 'WITHSCORES')
        if #batch == 0 then break end
        for j = 1, #batch, 2 do
          freed = freed + (tonumber(redis.call('HGET', costs, batch[j])) or 0)
          if freed >= excess then
            retry = math.max(1, tonumber(batch[j + 1]) + window - now)
            break
          end
        end
        start = start + 100
      end
    end
  end
  out[#out + 1] = math.max(0, limit - used[i])
  out[#out + 1] = reset
  out[#out + 1] = retry
end
return out
`;

/**
 * KEYS: log, costs per rule. ARGV: id, then cost per rule. No pruning needed: the running
 * sum counts every entry still in the hash, expired or not, so changing one entry's cost and
 * the sum by the same amount keeps them consistent (the next prune subtracts the new cost).
 */
const RECONCILE = `
local id = ARGV[1]
for i = 1, #KEYS / 2 do
  local log, costs = KEYS[2 * i - 1], KEYS[2 * i]
  local cost = tonumber(ARGV[i + 1])
  local old = tonumber(redis.call('HGET', costs, id))
  if old then
    if cost == 0 then
      redis.call('ZREM', log, id)
      redis.call('HDEL', costs, id)
      -- The latest stamp may have been this entry's: it is the newest one left now (0 when none).
      local newest = redis.call('ZRANGE', log, -1, -1, 'WITHSCORES')
      redis.call('HSET', costs, '>', #newest == 2 and newest[2] or 0)
    else
      redis.call('HSET', costs, id, cost)
    end
    redis.call('HINCRBY', costs, '#', cost - old)
  end
end
return 1
`;

/** KEYS: lease set. ARGV: now|'', limit, leaseId, ttlMs. Returns { allowed, active }. */
const ACQUIRE = `${PRELUDE}
local now = clock(ARGV[1])
local limit, id, ttl = tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local allowed = 0
if redis.call('ZSCORE', KEYS[1], id) or redis.call('ZCARD', KEYS[1]) < limit then
  allowed = 1
  redis.call('ZADD', KEYS[1], now + ttl, id)
  local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
  redis.call('PEXPIRE', KEYS[1], math.max(1, tonumber(last[2]) - now))
end
return { allowed, redis.call('ZCARD', KEYS[1]) }
`;

type ScriptFn = (numberOfKeys: number, ...args: (string | number)[]) => Promise<unknown>;

export interface RedisRateLimitStoreOptions {
  redis: Redis;
  /** Prepended to every key, e.g. `portcullis:rl:`. */
  prefix: string;
  /** Disconnect `redis` on close (tests, benchmarks); the Engine's shared client is not owned. */
  ownsClient?: boolean;
}

export class RedisRateLimitStore implements RateLimitStore {
  private readonly redis: Redis;
  private readonly prefix: string;
  private readonly ownsClient: boolean;
  private readonly nextId = idGenerator();
  private readonly scripts: { check: ScriptFn; reconcile: ScriptFn; acquire: ScriptFn };

  constructor(options: RedisRateLimitStoreOptions) {
    this.redis = options.redis;
    this.prefix = options.prefix;
    this.ownsClient = options.ownsClient ?? false;
    // defineCommand sends EVALSHA and falls back to EVAL once if the server lost the script.
    const names = { check: 'portcullisRlCheck', reconcile: 'portcullisRlReconcile', acquire: 'portcullisRlAcquire' } as const;
    this.redis.defineCommand(names.check, { lua: CHECK });
    this.redis.defineCommand(names.reconcile, { lua: RECONCILE });
    this.redis.defineCommand(names.acquire, { lua: ACQUIRE });
    const client = this.redis as unknown as Record<string, ScriptFn>;
    this.scripts = {
      check: client[names.check]!.bind(client),
      reconcile: client[names.reconcile]!.bind(client),
      acquire: client[names.acquire]!.bind(client),
    };
  }

  async check(rules: LimitRule[], options: CheckOptions = {}): Promise<Decision> {
    validateRules(rules, options.now, options.aheadMs);
    const id = this.nextId();
    const keys = rules.flatMap((r) => this.keys(r.key));
    const args = rules.flatMap((r) => [r.limit, r.windowMs, r.cost]);
    const raw = (await this.scripts.check(keys.length, ...keys, options.now ?? '', options.aheadMs ?? 0, id, ...args)) as number[];
    const allowed = raw[0] === 1;
    const outcomes: RuleOutcome[] = rules.map((rule, i) => ({
      key: rule.key,
      limit: rule.limit,
      remaining: Number(raw[2 + 3 * i]),
      resetAtMs: Number(raw[3 + 3 * i]),
      retryAfterMs: Number(raw[4 + 3 * i]),
    }));
    const recorded = allowed && rules.some((r) => r.cost > 0);
    return recorded ? { allowed, reservation: id, rules: outcomes } : { allowed, rules: outcomes };
  }

  async reconcile(reservation: string, adjustments: CostAdjustment[], options: CheckOptions = {}): Promise<void> {
    validateAdjustments(reservation, adjustments, options.now);
    if (adjustments.length === 0) return;
    const keys = adjustments.flatMap((a) => this.keys(a.key));
    await this.scripts.reconcile(keys.length, ...keys, reservation, ...adjustments.map((a) => a.cost));
  }

  async acquire(request: LeaseRequest): Promise<LeaseResult> {
    validateLease(request);
    const raw = (await this.scripts.acquire(
      1,
      this.leaseKey(request.key),
      request.now ?? '',
      request.limit,
      request.leaseId,
      request.ttlMs,
    )) as number[];
    return { allowed: raw[0] === 1, active: Number(raw[1]) };
  }

  async release(key: string, leaseId: string): Promise<void> {
    await this.redis.zrem(this.leaseKey(key), leaseId);
  }

  async close(): Promise<void> {
    if (this.ownsClient) this.redis.disconnect();
  }

  private keys(key: string): [string, string] {
    return [`${this.prefix}log:${key}`, `${this.prefix}cost:${key}`];
  }

  private leaseKey(key: string): string {
    return `${this.prefix}lease:${key}`;
  }
}
