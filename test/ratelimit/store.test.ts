import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { MemoryRateLimitStore } from '../../src/engine/ratelimit/memory.js';
import { RedisRateLimitStore } from '../../src/engine/ratelimit/redis.js';
import { describeWithRedis } from '../helpers/env.js';
import { describeRateLimitStoreContract } from './contract.js';

describeRateLimitStoreContract('memory', {
  create: async () => new MemoryRateLimitStore(),
});

describeWithRedis('RateLimitStore', ({ url, prefix }) => {
  const make = () => new RedisRateLimitStore({ redis: new Redis(url), prefix, ownsClient: true });
  describeRateLimitStoreContract('redis', {
    create: async () => make(),
    peers: async (count) => Array.from({ length: count }, make),
  });

  it('sets PEXPIRE on every key it writes, so idle keys vanish', async () => {
    const redis = new Redis(url);
    const store = new RedisRateLimitStore({ redis, prefix });
    try {
      await store.check([{ key: 'ttl:{x}', limit: 5, windowMs: 5000, cost: 2 }]);
      await store.acquire({ key: 'ttl:{x}', limit: 1, leaseId: 'l', ttlMs: 3000 });
      const keys = await redis.keys(`${prefix}*ttl:{x}`);
      expect(keys.sort()).toEqual([`${prefix}cost:ttl:{x}`, `${prefix}lease:ttl:{x}`, `${prefix}log:ttl:{x}`]);
      for (const k of keys) {
        const ttl = await redis.pttl(k);
        expect(ttl).toBeGreaterThan(0);
        expect(ttl).toBeLessThanOrEqual(5000);
      }
    } finally {
      redis.disconnect();
    }
  });
});

describe('MemoryRateLimitStore bounds', () => {
  it('forgets idle keys on sweep and never holds more than maxKeys', async () => {
    let now = Date.UTC(2030, 0, 1);
    const store = new MemoryRateLimitStore({ maxKeys: 100, sweepIntervalMs: 1000, clock: () => now });
    for (let i = 0; i < 500; i++) {
      await store.check([{ key: `k${i}`, limit: 5, windowMs: 500, cost: 1 }]);
      expect(store.size).toBeLessThanOrEqual(100);
    }
    expect(store.size).toBe(100);
    // The most recently used keys survive the cap with their usage.
    const kept = await store.check([{ key: 'k499', limit: 5, windowMs: 500, cost: 0 }]);
    expect(kept.rules[0]!.remaining).toBe(4);
    now += 2000;
    await store.check([{ key: 'fresh', limit: 5, windowMs: 500, cost: 1 }]);
    expect(store.size).toBe(1);
    await store.close();
  });

  it('forgets the least recently used key first (to the second)', async () => {
    let now = Date.UTC(2030, 0, 1);
    const store = new MemoryRateLimitStore({ maxKeys: 3, sweepIntervalMs: 3_600_000, clock: () => now });
    const rule = (key: string, cost = 1) => [{ key, limit: 5, windowMs: 60_000, cost }];
    for (const key of ['a', 'b', 'c']) await store.check(rule(key));
    now += 1000;
    await store.check(rule('a')); // a is now the most recently used
    await store.check(rule('d')); // full: b goes
    expect(store.size).toBe(3);
    const remaining = async (key: string) => (await store.check(rule(key, 0))).rules[0]!.remaining;
    expect(await remaining('a')).toBe(3);
    expect(await remaining('c')).toBe(4);
    expect(await remaining('d')).toBe(4);
    expect(await remaining('b')).toBe(5); // forgotten: a fresh log
    await store.close();
  });
});

// A seeded generator (mulberry32): the same sequence on every run.
let seed = 0;
const random = () => {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};

describe('MemoryRateLimitStore against a plain model of the sliding log', () => {
  // Small logs under steady traffic; then large bursts that expire at once (the log grows,
  // compacts and gives its room back).
  it.each([
    { name: 'steady', LIMIT: 40, tick: () => Math.floor(random() * 30) },
    { name: 'bursts', LIMIT: 3000, tick: () => (random() < 0.002 ? 1100 : Math.floor(random() * 2)) },
  ])('agrees on every decision with random checks, stamps ahead, reconciliations and expiries ($name)', async ({ LIMIT, tick }) => {
    seed = 0x10c;
    const WINDOW = 1000;
    let now = Date.UTC(2030, 0, 1);
    const store = new MemoryRateLimitStore({ clock: () => now });
    // The model: every entry kept, usage summed afresh each time.
    let model: Array<{ ts: number; cost: number; id: string }> = [];
    const live = () => model.filter((e) => e.ts > now - WINDOW).sort((a, b) => a.ts - b.ts);
    const reservations: string[] = [];
    let checks = 0;
    for (let step = 0; step < 6000; step++) {
      now += tick();
      if (random() < 0.3 && reservations.length > 0) {
        const id = reservations[Math.floor(random() * reservations.length)]!;
        const cost = Math.floor(random() * 6);
        await store.reconcile(id, [{ key: 'k', windowMs: WINDOW, cost }], { now });
        model = live();
        const entry = model.find((e) => e.id === id);
        if (entry && cost === 0) model = model.filter((e) => e !== entry);
        else if (entry) entry.cost = cost;
        continue;
      }
      checks++;
      const cost = Math.floor(random() * 5);
      const aheadMs = random() < 0.3 ? 300 : 0;
      const decision = await store.check([{ key: 'k', limit: LIMIT, windowMs: WINDOW, cost }], { now, aheadMs });
      const before = live();
      const used = before.reduce((s, e) => s + e.cost, 0);
      const need = cost === 0 ? 1 : cost;
      const allowed = used + need <= LIMIT;
      if (allowed && cost > 0) {
        model = [...before, { ts: now + aheadMs, cost, id: decision.reservation! }];
        reservations.push(decision.reservation!);
      }
      const after = live();
      const usedAfter = after.reduce((s, e) => s + e.cost, 0);
      let retryAfterMs = 0;
      if (!allowed) {
        let freed = 0;
        retryAfterMs = WINDOW;
        for (const e of after) {
          freed += e.cost;
          if (freed >= used + need - LIMIT) {
            retryAfterMs = Math.max(1, e.ts + WINDOW - now);
            break;
          }
        }
      }
      const newest = after.length ? Math.max(...after.map((e) => e.ts)) : undefined;
      expect(decision.allowed, `step ${step}`).toBe(allowed);
      expect(decision.rules[0], `step ${step}`).toMatchObject({
        remaining: Math.max(0, LIMIT - usedAfter),
        resetAtMs: newest === undefined ? now : newest + WINDOW,
        retryAfterMs,
      });
    }
    expect(checks).toBeGreaterThan(3000);
    await store.close();
  });
});
