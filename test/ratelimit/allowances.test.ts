/**
 * Allowances (src/ratelimit/allowances.ts): two limiters sharing Redis, a busy user, leases
 * short enough to end within the test. What must hold: never more than the limit in total,
 * most requests admitted without a store call, and what was leased but not used (requests,
 * reserved tokens) given back when an allowance ends, so the limit is reached exactly.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { afterAll, expect, it } from 'vitest';
import type { Environment } from '../../src/config/index.js';
import { loadConfig } from '../../src/config/index.js';
import type { RateLimitStore } from '../../src/engine/ratelimit/port.js';
import { RedisRateLimitStore } from '../../src/engine/ratelimit/redis.js';
import { RateLimiter } from '../../src/ratelimit/index.js';
import { baseEnv, describeWithRedis, uniqueName } from '../helpers/env.js';

const PERIOD = 150;

describeWithRedis('Rate-limit allowances', ({ url, prefix }) => {
  const clients: Redis[] = [];
  afterAll(() => clients.forEach((c) => c.disconnect()));

  /** Two instances' limiters over one Redis; `calls` counts store checks made by both. */
  function instances(env: Environment) {
    const config = loadConfig({ ...baseEnv('/tmp/unused'), RATE_LIMIT_RPM: '0', RATE_LIMIT_RPD: '0', RATE_LIMIT_TPM: '0', ...env });
    const calls = { check: 0 };
    const make = () => {
      const redis = new Redis(url);
      clients.push(redis);
      const store = new RedisRateLimitStore({ redis, prefix });
      const counted: RateLimitStore = Object.assign(Object.create(store) as RateLimitStore, {
        check: (...args: Parameters<RateLimitStore['check']>) => {
          calls.check++;
          return store.check(...args);
        },
      });
      return { limiter: new RateLimiter({ config, store: counted, allowances: { periodMs: PERIOD, minDemand: 2, headroom: 2 } }), store };
    };
    return { a: make(), b: make(), calls };
  }

  it('never admits more than the limit across instances, mostly without a store call, and reaches it exactly once the leases end', async () => {
    const { a, b, calls } = instances({ RATE_LIMIT_RPM: '300' });
    const user = uniqueName('usr');
    const request = { userId: user, estimatedInputTokens: 10, maxTokens: 10 };
    let admitted = 0;
    let asked = 0;
    // Bursts of 10 concurrent requests, alternating instances, well past the limit.
    for (let wave = 0; wave < 60; wave++) {
      const results = await Promise.all(Array.from({ length: 10 }, (_, i) => ((wave + i) % 2 ? a : b).limiter.admitRequest(request)));
      asked += results.length;
      admitted += results.filter((r) => r.allowed).length;
      expect(admitted).toBeLessThanOrEqual(300);
      // Far from the limit, leases (one store call each) admit most requests.
      if (asked === 150) expect(calls.check).toBeLessThan(75);
    }
    expect(asked).toBe(600);
    // Once every allowance has ended, what they held unused is free again: the rest of the
    // limit is admitted one by one, then the next request is refused.
    await sleep(PERIOD * 3);
    for (let i = 0; admitted < 300 && i < 300; i++) {
      const r = await (i % 2 ? a : b).limiter.admitRequest(request);
      expect(r.allowed).toBe(true);
      admitted++;
    }
    await sleep(PERIOD * 3);
    expect((await a.limiter.admitRequest(request)).allowed).toBe(false);
    expect((await b.limiter.admitRequest(request)).allowed).toBe(false);
    expect(admitted).toBe(300);
  });

  it('settles tokens in memory and records exactly the tokens used when an allowance ends', async () => {
    const { a, b } = instances({ RATE_LIMIT_TPM: '1000000' });
    const user = uniqueName('usr');
    let admitted = 0;
    for (let wave = 0; wave < 20; wave++) {
      const results = await Promise.all(
        Array.from({ length: 10 }, (_, i) => ((wave + i) % 2 ? a : b).limiter.admitRequest({ userId: user, estimatedInputTokens: 100, maxTokens: 900 })),
      );
      for (const [i, r] of results.entries()) {
        expect(r.allowed).toBe(true);
        admitted++;
        // Each answer used 40 of the 1000 tokens it reserved.
        await ((wave + i) % 2 ? a : b).limiter.settle(r.reservation!, 40);
      }
    }
    expect(admitted).toBe(200);
    await Promise.all([a.limiter.close(), b.limiter.close()]);
    const probe = await a.store.check([{ key: `u:{${user}}:tpm`, limit: 1_000_000, windowMs: 60_000, cost: 0 }]);
    expect(probe.rules[0]!.remaining).toBe(1_000_000 - 40 * admitted);
  });
});
