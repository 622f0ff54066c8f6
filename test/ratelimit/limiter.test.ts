import { createServer } from 'node:net';
import { Redis } from 'ioredis';
import { Counter, Registry } from 'prom-client';
import { afterAll, describe, expect, it } from 'vitest';
import type { Environment } from '../../src/config/index.js';
import { ConfigError, loadConfig } from '../../src/config/index.js';
import { MemoryRateLimitStore } from '../../src/engine/ratelimit/memory.js';
import type { RateLimitStore } from '../../src/engine/ratelimit/port.js';
import { RedisRateLimitStore } from '../../src/engine/ratelimit/redis.js';
import { GatewayError, renderError } from '../../src/errors/index.js';
import { createRateLimitStore, ipGroup, RateLimiter, rateLimitError, rateLimitHeaders } from '../../src/ratelimit/index.js';
import { baseEnv, describeWithRedis, uniqueName } from '../helpers/env.js';

const T0 = Date.UTC(2030, 0, 1);
const config = (extra: Environment = {}) => loadConfig({ ...baseEnv('/tmp/unused'), ...extra });

function limiter(extra: Environment = {}) {
  const warnings: { details: object; message: string }[] = [];
  const store = new MemoryRateLimitStore();
  const rl = new RateLimiter({ config: config(extra), store, logger: { warn: (details, message) => warnings.push({ details, message }) } });
  return { rl, store, warnings };
}

const request = (userId: string, extra: Partial<Parameters<RateLimiter['admitRequest']>[0]> = {}) => ({
  userId,
  estimatedInputTokens: 10,
  maxTokens: 100,
  ...extra,
});

describe('RateLimiter', () => {
  it('refuses past requests per minute with a 429 naming the limit, and headers that say so', async () => {
    const { rl } = limiter({ RATE_LIMIT_RPM: '3' });
    const user = uniqueName('usr');
    for (let i = 0; i < 3; i++) expect((await rl.admitRequest(request(user, { now: T0 + i * 1000 }))).allowed).toBe(true);
    const refused = await rl.admitRequest(request(user, { now: T0 + 48_000 }));
    expect(refused.allowed).toBe(false);
    expect(refused.reservation).toBeUndefined();
    const err = rateLimitError(refused);
    expect(err).toBeInstanceOf(GatewayError);
    expect(err.message).toBe('Rate limit exceeded: 3 requests per minute; retry in 12 s');
    expect(err.reason).toBe('requests_per_minute');
    const rendered = renderError(err);
    expect(rendered.status).toBe(429);
    expect(rendered.headers['retry-after']).toBe('12');
    expect(rendered.body.error).toMatchObject({ type: 'rate_limit_error', code: 'requests_per_minute' });
    const headers = rateLimitHeaders(refused);
    expect(headers).toMatchObject({
      'anthropic-ratelimit-requests-limit': '3',
      'anthropic-ratelimit-requests-remaining': '0',
      'anthropic-ratelimit-requests-reset': '2030-01-01T00:01:02Z',
      'anthropic-ratelimit-tokens-limit': '200000',
      'retry-after': '12',
      'retry-after-ms': '12000',
    });
    // Anthropic's set only (no x-ratelimit-* copies of the same numbers).
    expect(Object.keys(headers).filter((h) => !h.startsWith('anthropic-ratelimit-') && !h.startsWith('retry-after'))).toEqual([]);
  });

  it('reserves input + max_tokens and gives back what was not used on settle', async () => {
    const { rl } = limiter({ RATE_LIMIT_TPM: '1000' });
    const user = uniqueName('usr');
    const first = await rl.admitRequest(request(user, { estimatedInputTokens: 100, maxTokens: 800, now: T0 }));
    expect(first.reservation).toMatchObject({ reserved: 900, windowMs: 60_000 });
    expect(rateLimitHeaders(first)['anthropic-ratelimit-tokens-remaining']).toBe('100');
    const second = await rl.admitRequest(request(user, { estimatedInputTokens: 100, maxTokens: 100, now: T0 + 1 }));
    expect(second.allowed).toBe(false);
    expect(rateLimitError(second).message).toBe('Rate limit exceeded: 1000 tokens per minute; retry in 60 s');
    await rl.settle(first.reservation!, 250, T0 + 2);
    const third = await rl.admitRequest(request(user, { estimatedInputTokens: 100, maxTokens: 100, now: T0 + 3 }));
    expect(third.allowed).toBe(true);
    expect(third.limits.find((l) => l.name === 'tokens_per_minute')!.remaining).toBe(550);
    // A max_tokens larger than the whole limit reserves the limit rather than never fitting.
    const other = uniqueName('usr');
    expect((await rl.admitRequest(request(other, { estimatedInputTokens: 10, maxTokens: 64_000, now: T0 }))).reservation?.reserved).toBe(1000);
    await expect(rl.admitRequest(request(other, { estimatedInputTokens: 1001, now: T0 }))).rejects.toMatchObject({
      code: 'invalid_request',
      reason: 'request_exceeds_token_limit',
    });
  });

  it('applies named tiers, per-user overrides, and falls back to default for unknown tiers', async () => {
    const { rl, warnings } = limiter({ RATE_LIMIT_RPM: '2', RATE_LIMIT_TIERS: '{"pro":{"rpm":5,"tpm":2000000}}' });
    expect(rl.limitsFor('pro')).toEqual({ rpm: 5, rpd: 5000, tpm: 2_000_000, concurrent: 4 });
    expect(rl.limitsFor('pro', { rpm: 1 })).toMatchObject({ rpm: 1, tpm: 2_000_000 });
    const admitted = async (user: string, extra: object) => {
      let n = 0;
      for (let i = 0; i < 8; i++) if ((await rl.admitRequest(request(user, { now: T0, ...extra }))).allowed) n++;
      return n;
    };
    expect(await admitted(uniqueName('usr'), {})).toBe(2);
    expect(await admitted(uniqueName('usr'), { tier: 'pro' })).toBe(5);
    expect(await admitted(uniqueName('usr'), { tier: 'pro', override: { rpm: 7 } })).toBe(7);
    expect(await admitted(uniqueName('usr'), { tier: 'gold' })).toBe(2);
    expect(warnings).toEqual([{ details: { tier: 'gold' }, message: 'unknown rate-limit tier; using default' }]);
    // 0 disables a limit.
    expect(await admitted(uniqueName('usr'), { override: { rpm: 0 } })).toBe(8);
  });

  it('rejects malformed tier settings at startup', () => {
    expect(() => config({ RATE_LIMIT_TIERS: '{"pro":{"rpm":"many"}}' })).toThrow(ConfigError);
    expect(() => config({ RATE_LIMIT_TIERS: '{"default":{"rpm":5}}' })).toThrow(/RATE_LIMIT_TIERS/);
    expect(() => config({ RATE_LIMIT_TIERS: 'pro=5' })).toThrow(/not valid JSON/);
    expect(() => config({ RATE_LIMIT_FAILURE_POLICY: 'maybe' })).toThrow(/closed, open/);
  });

  it('caps concurrent streams per user and frees slots on release', async () => {
    const { rl } = limiter({ RATE_LIMIT_CONCURRENT: '2' });
    const userId = uniqueName('usr');
    const a = await rl.acquireStream({ userId });
    const b = await rl.acquireStream({ userId, leaseId: 'b' });
    expect(a.lease && b.lease?.leaseId).toBe('b');
    const c = await rl.acquireStream({ userId });
    expect(c.allowed).toBe(false);
    expect(rateLimitError(c).message).toBe('Rate limit exceeded: 2 concurrent streams; retry in 1 s');
    expect(await rl.renewStream(a.lease!)).toBe(true);
    await rl.releaseStream(a.lease!);
    expect((await rl.acquireStream({ userId })).allowed).toBe(true);
  });

  it('answers at once with the in-process store (the *Now methods), as the async methods do', () => {
    const { rl } = limiter({ RATE_LIMIT_RPM: '2', RATE_LIMIT_TPM: '1000', RATE_LIMIT_CONCURRENT: '1' });
    const user = uniqueName('usr');
    const first = rl.admitRequestNow(request(user, { estimatedInputTokens: 100, maxTokens: 800, now: T0 }));
    expect(first).toMatchObject({ allowed: true, degraded: false, reservation: { reserved: 900 } });
    // Settled at once: the 650 tokens not used are free for the next request.
    expect(rl.settleNow(first!.reservation!, 250, T0 + 1)).toBe(true);
    const second = rl.admitRequestNow(request(user, { estimatedInputTokens: 100, maxTokens: 500, now: T0 + 2 }));
    expect(second?.allowed).toBe(true);
    expect(second!.limits.find((l) => l.name === 'tokens_per_minute')!.remaining).toBe(150);
    // The third request of the minute is refused, as admitRequest refuses it.
    expect(rl.admitRequestNow(request(user, { now: T0 + 3 }))?.allowed).toBe(false);
    expect(() => rl.admitRequestNow(request(user, { estimatedInputTokens: 1001, now: T0 }))).toThrow(/exceed your limit of 1000 tokens per minute/);

    const slot = rl.acquireStreamNow({ userId: user });
    expect(slot?.allowed).toBe(true);
    expect(rl.acquireStreamNow({ userId: user })?.allowed).toBe(false);
    expect(rl.releaseStreamNow(slot!.lease!)).toBe(true);
    expect(rl.acquireStreamNow({ userId: user })?.allowed).toBe(true);
  });

  it('defers to the async methods when the store has no synchronous operations', async () => {
    // The in-process store's async operations alone, as a remote store offers them.
    const memory = new MemoryRateLimitStore();
    const remote: RateLimitStore = {
      check: (rules, options) => memory.check(rules, options),
      reconcile: (id, adjustments, options) => memory.reconcile(id, adjustments, options),
      acquire: (request) => memory.acquire(request),
      release: (key, leaseId) => memory.release(key, leaseId),
      close: () => memory.close(),
    };
    const rl = new RateLimiter({ config: config({ RATE_LIMIT_TPM: '1000', RATE_LIMIT_CONCURRENT: '1' }), store: remote, allowances: false });
    const user = uniqueName('usr');
    expect(rl.admitRequestNow(request(user))).toBeUndefined();
    expect(rl.acquireStreamNow({ userId: user })).toBeUndefined();
    const admitted = await rl.admitRequest(request(user, { estimatedInputTokens: 100, maxTokens: 800 }));
    expect(rl.settleNow(admitted.reservation!, 900)).toBe(true); // nothing to change
    expect(rl.settleNow(admitted.reservation!, 250)).toBe(false);
    await rl.settle(admitted.reservation!, 250);
    expect((await rl.admitRequest(request(user, { estimatedInputTokens: 100, maxTokens: 600 }))).allowed).toBe(true);
    const slot = await rl.acquireStream({ userId: user });
    expect(rl.releaseStreamNow(slot.lease!)).toBe(false);
    await rl.releaseStream(slot.lease!);
    expect((await rl.acquireStream({ userId: user })).allowed).toBe(true);
  });

  it('gives back a stream slot the store took after the limiter stopped waiting for it', async () => {
    const memory = new MemoryRateLimitStore();
    const slow: RateLimitStore = {
      check: (rules, options) => memory.check(rules, options),
      reconcile: (id, adjustments, options) => memory.reconcile(id, adjustments, options),
      acquire: (request) => new Promise((resolve) => setTimeout(() => resolve(memory.acquire(request)), 100)),
      release: (key, leaseId) => memory.release(key, leaseId),
      close: () => memory.close(),
    };
    const rl = new RateLimiter({ config: config({ RATE_LIMIT_CONCURRENT: '1', RATE_LIMIT_FAILURE_POLICY: 'open' }), store: slow, storeTimeoutMs: 20, allowances: false });
    const user = uniqueName('usr');
    expect(await rl.acquireStream({ userId: user })).toEqual({ allowed: true, limits: [], degraded: true });
    await new Promise((r) => setTimeout(r, 150));
    // Had the late slot stayed, this user's one slot would be taken until its TTL.
    const memoryOnly = new RateLimiter({ config: config({ RATE_LIMIT_CONCURRENT: '1' }), store: memory, allowances: false });
    expect((await memoryOnly.acquireStream({ userId: user })).allowed).toBe(true);
  });

  it('limits per IP before authentication, counting failures separately and IPv6 by /64', async () => {
    const { rl } = limiter({ RATE_LIMIT_IP_AUTH_PER_MIN: '2', RATE_LIMIT_AUTH_FAILURES_PER_MIN: '2' });
    expect((await rl.admitIp('203.0.113.7', 'auth', T0)).allowed).toBe(true);
    expect((await rl.admitIp('::ffff:203.0.113.7', 'auth', T0)).allowed).toBe(true);
    const refused = await rl.admitIp('203.0.113.7', 'auth', T0);
    expect(rateLimitError(refused).reason).toBe('ip_auth');
    expect((await rl.admitIp('203.0.113.7', 'upgrade', T0)).allowed).toBe(true);
    // Failures: the probe does not count; two recorded failures close the door for a minute.
    for (let i = 0; i < 3; i++) expect((await rl.admitIp('2001:db8:1:2::1', 'auth_failure', T0)).allowed).toBe(true);
    await rl.recordAuthFailure('2001:db8:1:2::1', T0);
    await rl.recordAuthFailure('2001:db8:1:2:ffff::9', T0 + 1000);
    const locked = await rl.admitIp('2001:db8:1:2::5', 'auth_failure', T0 + 2000);
    expect(locked.allowed).toBe(false);
    expect(rateLimitError(locked).message).toBe('Rate limit exceeded: 2 failed sign-ins per minute from your address; retry in 58 s');
    expect((await rl.admitIp('2001:db8:1:3::1', 'auth_failure', T0 + 2000)).allowed).toBe(true);
    expect((await rl.admitIp('2001:db8:1:2::5', 'auth_failure', T0 + 60_000)).allowed).toBe(true);
    expect(ipGroup('2001:0db8:0001:0002:0:0:0:1')).toBe('2001:db8:1:2::/64');
  });
});

describe('RateLimiter failure policy with Redis unreachable', () => {
  const clients: Redis[] = [];
  afterAll(() => clients.forEach((c) => c.disconnect()));

  async function deadStore(): Promise<RedisRateLimitStore> {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as { port: number };
    await new Promise<void>((resolve) => server.close(() => resolve()));
    const redis = new Redis({ host: '127.0.0.1', port, maxRetriesPerRequest: 1, retryStrategy: () => 100 });
    redis.on('error', () => {});
    clients.push(redis);
    return new RedisRateLimitStore({ redis, prefix: 'dead:' });
  }

  function setup(policy: 'closed' | 'open', store: RedisRateLimitStore) {
    const registry = new Registry();
    const counter = new Counter({ name: 'ratelimit_store_failures_total', help: 'x', labelNames: ['operation', 'policy'] as const, registers: [registry] });
    const warnings: string[] = [];
    const rl = new RateLimiter({
      config: config({ RATE_LIMIT_FAILURE_POLICY: policy, RATE_LIMIT_IP_AUTH_PER_MIN: '30' }),
      store,
      storeTimeoutMs: 300,
      failureCounter: counter,
      logger: { warn: (_d, message) => warnings.push(message) },
    });
    return { rl, registry, warnings };
  }

  it('closed refuses with 503 rate_limiter_unavailable, warns and counts', async () => {
    const { rl, registry, warnings } = setup('closed', await deadStore());
    const err = await rl.admitRequest(request('usr_a')).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'unavailable', status: 503, reason: 'rate_limiter_unavailable' });
    await expect(rl.admitIp('127.0.0.1', 'auth')).rejects.toMatchObject({ reason: 'rate_limiter_unavailable' });
    // Settling never throws: the request already happened.
    await rl.settle({ id: 'x', key: 'u:{usr_a}:tpm', windowMs: 60_000, reserved: 10 }, 5);
    expect(warnings).toEqual(Array(3).fill('rate-limit store unavailable'));
    const metric = await registry.getSingleMetricAsString('ratelimit_store_failures_total');
    expect(metric).toContain('ratelimit_store_failures_total{operation="check",policy="closed"} 2');
    expect(metric).toContain('ratelimit_store_failures_total{operation="reconcile",policy="closed"} 1');
  });

  it('open admits without limits, marked degraded, and still warns and counts', async () => {
    const { rl, registry, warnings } = setup('open', await deadStore());
    const admission = await rl.admitRequest(request('usr_a'));
    expect(admission).toEqual({ allowed: true, limits: [], degraded: true });
    expect((await rl.acquireStream({ userId: 'usr_a' })).allowed).toBe(true);
    expect(warnings).toHaveLength(2);
    expect(await registry.getSingleMetricAsString('ratelimit_store_failures_total')).toContain('{operation="check",policy="open"} 1');
  });
});

describe('createRateLimitStore', () => {
  it('picks the in-process store without Redis', () => {
    expect(createRateLimitStore(config(), undefined)).toBeInstanceOf(MemoryRateLimitStore);
  });
});

describeWithRedis('RateLimiter over Redis', ({ url, prefix }) => {
  it('shares limits between two instances through createRateLimitStore', async () => {
    const cfg = config({ RATE_LIMIT_RPM: '3', REDIS_KEY_PREFIX: prefix });
    const a = new Redis(url);
    const b = new Redis(url);
    try {
      const storeA = createRateLimitStore(cfg, a);
      expect(storeA).toBeInstanceOf(RedisRateLimitStore);
      const one = new RateLimiter({ config: cfg, store: storeA });
      const two = new RateLimiter({ config: cfg, store: createRateLimitStore(cfg, b) });
      const user = uniqueName('usr');
      const results = await Promise.all([one, two, one, two, one].map((rl) => rl.admitRequest(request(user))));
      expect(results.filter((r) => r.allowed)).toHaveLength(3);
      const admitted = results.find((r) => r.allowed)!;
      await two.settle(admitted.reservation!, 50);
      expect(await a.keys(`${prefix}rl:*`)).toEqual(expect.arrayContaining([`${prefix}rl:log:u:{${user}}:rpm`]));
    } finally {
      a.disconnect();
      b.disconnect();
    }
  });
});
