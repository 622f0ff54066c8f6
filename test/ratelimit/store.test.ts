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
});
