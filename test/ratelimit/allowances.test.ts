/**
 * Allowances (src/ratelimit/allowances.ts): two limiters sharing Redis, a busy user, leases
 * short enough to end within the test. What must hold: never more than the limit in total,
 * most requests admitted without a store call, and what was leased but not used (requests,
 * reserved tokens) given back when an allowance ends, so the limit is reached exactly.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import type { Environment } from '../../src/config/index.js';
import { loadConfig } from '../../src/config/index.js';
import type { RateLimitStore } from '../../src/engine/ratelimit/port.js';
import { RedisRateLimitStore } from '../../src/engine/ratelimit/redis.js';
import { RateLimiter } from '../../src/ratelimit/index.js';
import type { AllowanceRule, AllowanceStore } from '../../src/ratelimit/allowances.js';
import { Allowances } from '../../src/ratelimit/allowances.js';
import { baseEnv, describeWithRedis, uniqueName } from '../helpers/env.js';

const PERIOD = 150;

describe('Allowances (a recording store, a driven clock)', () => {
  const rules: AllowanceRule[] = [
    { name: 'requests_per_minute', key: 'u:{a}:rpm', limit: 1000, windowMs: 60_000, tokens: false },
    { name: 'tokens_per_minute', key: 'u:{a}:tpm', limit: 1_000_000, windowMs: 60_000, tokens: true },
  ];
  const roomy = { allowed: true, rules: rules.map((r) => ({ key: r.key, limit: r.limit, remaining: r.limit / 2, resetAtMs: 0, retryAfterMs: 0 })) };

  function setup(refuse = false) {
    const clock = { now: 0 };
    const leases: { costs: number[]; aheadMs: number }[] = [];
    const reconciled: { id: string; costs: number[] }[] = [];
    const store: AllowanceStore = {
      check: async (checked, aheadMs) => {
        leases.push({ costs: checked.map((r) => r.cost), aheadMs });
        if (refuse) return { allowed: false, rules: checked.map((r) => ({ key: r.key, limit: r.limit, remaining: 0, resetAtMs: 0, retryAfterMs: 1000 })) };
        return { allowed: true, reservation: `lease${leases.length}`, rules: checked.map((r) => ({ key: r.key, limit: r.limit, remaining: r.limit - r.cost, resetAtMs: 0, retryAfterMs: 0 })) };
      },
      reconcile: async (id, adjustments) => {
        reconciled.push({ id, costs: adjustments.map((a) => a.cost) });
      },
    };
    const allowances = new Allowances(store, { periodMs: 1000, minDemand: 2, headroom: 2 }, () => clock.now);
    /** Two admissions by the store make the user busy enough; the lease lands a tick later. */
    const busy = async () => {
      allowances.admitted('a', roomy, 100, () => rules);
      allowances.admitted('a', roomy, 100, () => rules);
      await new Promise((resolve) => setImmediate(resolve));
    };
    return { clock, leases, reconciled, allowances, busy };
  }

  it('leases with its entries stamped a period ahead, and stops admitting at the end of the period even if its timer has not fired', async () => {
    const { clock, leases, reconciled, allowances, busy } = setup();
    await busy();
    expect(leases).toHaveLength(1);
    expect(leases[0]!.aheadMs).toBe(1000);
    expect(allowances.take('a', 100)).toBeDefined();
    clock.now = 999; // the timer (real time) has not fired; the allowance's clock says the period is over
    expect(allowances.take('a', 100)).toBeUndefined();
    expect(reconciled).toEqual([{ id: 'lease1', costs: [1, 100] }]);
    await allowances.close();
  });

  it('does not wait for answers with nothing reserved; one still running is reconciled at the end with its reservation, then with its real tokens', async () => {
    const { clock, reconciled, allowances, busy } = setup();
    await busy();
    const counted = allowances.take('a', 0)!; // count_tokens: reserves nothing, never settles
    expect(counted.inFlight).toBe(0);
    const running = allowances.take('a', 100)!;
    expect(running.inFlight).toBe(1);
    clock.now = 2000;
    expect(allowances.take('a', 100)).toBeUndefined();
    expect(reconciled).toEqual([{ id: 'lease1', costs: [2, 100] }]);
    allowances.settle(running, 100, 30);
    expect(reconciled).toEqual([
      { id: 'lease1', costs: [2, 100] },
      { id: 'lease1', costs: [2, 30] },
    ]);
    await allowances.close();
  });

  it('after a refused lease, asks for none until a period has passed', async () => {
    const { clock, leases, allowances, busy } = setup(true);
    await busy();
    expect(leases).toHaveLength(1);
    for (let i = 0; i < 20; i++) await busy(); // busy all along, yet no store call per request
    expect(leases).toHaveLength(1);
    clock.now = 1000;
    await busy();
    expect(leases).toHaveLength(2);
    await allowances.close();
  });

  it('leases no more once closed, and gives back what a live allowance holds', async () => {
    const { leases, reconciled, allowances, busy } = setup();
    await busy();
    allowances.take('a', 100);
    await allowances.close();
    expect(reconciled).toEqual([{ id: 'lease1', costs: [1, 100] }]);
    await busy();
    expect(leases).toHaveLength(1);
    expect(allowances.take('a', 100)).toBeUndefined();
  });
});

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
    // limit is admitted one by one (through one instance: another's allowance would hold
    // some back, the documented price), then the next request is refused.
    await sleep(PERIOD * 3);
    for (let i = 0; admitted < 300 && i < 300; i++) {
      const r = await a.limiter.admitRequest(request);
      expect(r.allowed).toBe(true);
      admitted++;
    }
    await sleep(PERIOD * 3);
    expect((await a.limiter.admitRequest(request)).allowed).toBe(false);
    expect((await b.limiter.admitRequest(request)).allowed).toBe(false);
    expect(admitted).toBe(300);
  });

  it('RATE_LIMIT_ALLOWANCES=false checks every request against Redis', async () => {
    const { a, b, calls } = instances({ RATE_LIMIT_RPM: '300', RATE_LIMIT_ALLOWANCES: 'false' });
    const user = uniqueName('usr');
    for (let wave = 0; wave < 6; wave++) {
      await Promise.all(Array.from({ length: 10 }, (_, i) => ((wave + i) % 2 ? a : b).limiter.admitRequest({ userId: user, estimatedInputTokens: 10, maxTokens: 10 })));
    }
    expect(calls.check).toBe(60);
  });

  it('settles tokens in memory and records exactly the tokens used when an allowance ends', async () => {
    const { a, b, calls } = instances({ RATE_LIMIT_TPM: '1000000' });
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
    expect(calls.check).toBeLessThan(100); // most admitted (and settled) from allowances
    await Promise.all([a.limiter.close(), b.limiter.close()]);
    const probe = await a.store.check([{ key: `u:{${user}}:tpm`, limit: 1_000_000, windowMs: 60_000, cost: 0 }]);
    expect(probe.rules[0]!.remaining).toBe(1_000_000 - 40 * admitted);
  });
});
