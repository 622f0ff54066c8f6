/**
 * Checks per second of the rate-limit stores: memory and Redis in one run, each for a
 * bounded time, sequentially (one in flight) and with 50 in flight.
 *
 *   npx tsx bench/ratelimit/store.ts            (Redis at BENCH_REDIS_URL or redis://127.0.0.1:6379)
 *   BENCH_SECONDS=5 npx tsx bench/ratelimit/store.ts
 *
 * Each check is the gateway's real shape: three rules (requests/minute, requests/day,
 * tokens/minute) for one of 1000 users, limits high enough that most checks are admitted.
 */
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { MemoryRateLimitStore } from '../../src/engine/ratelimit/memory.js';
import type { LimitRule, RateLimitStore } from '../../src/engine/ratelimit/port.js';
import { RedisRateLimitStore } from '../../src/engine/ratelimit/redis.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 3);
const REDIS_URL = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
const USERS = 1000;

function rules(i: number): LimitRule[] {
  const user = `u:{bench${i % USERS}}`;
  return [
    { key: `${user}:rpm`, limit: 1_000_000, windowMs: 60_000, cost: 1 },
    { key: `${user}:rpd`, limit: 10_000_000, windowMs: 86_400_000, cost: 1 },
    { key: `${user}:tpm`, limit: 1_000_000_000, windowMs: 60_000, cost: 1200 },
  ];
}

interface Result {
  store: string;
  inFlight: number;
  checks: number;
  perSecond: number;
  p50: number;
  p99: number;
}

async function run(name: string, store: RateLimitStore, inFlight: number): Promise<Result> {
  const deadline = performance.now() + SECONDS * 1000;
  const latencies: number[] = [];
  let next = 0;
  const start = performance.now();
  async function worker(): Promise<void> {
    while (performance.now() < deadline) {
      const t = performance.now();
      await store.check(rules(next++));
      if (latencies.length < 2_000_000) latencies.push(performance.now() - t);
    }
  }
  await Promise.all(Array.from({ length: inFlight }, worker));
  const elapsed = (performance.now() - start) / 1000;
  latencies.sort((a, b) => a - b);
  const pct = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] ?? 0;
  return { store: name, inFlight, checks: next, perSecond: Math.round(next / elapsed), p50: pct(0.5), p99: pct(0.99) };
}

async function main(): Promise<void> {
  const results: Result[] = [];
  const memory = new MemoryRateLimitStore();
  for (const n of [1, 50]) results.push(await run('memory', memory, n));
  await memory.close();

  const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
  const prefix = `bench:${randomBytes(4).toString('hex')}:`;
  const store = new RedisRateLimitStore({ redis, prefix });
  try {
    await redis.ping();
    for (const n of [1, 50]) results.push(await run('redis', store, n));
  } catch (err) {
    console.error(`redis skipped: ${(err as Error).message}`);
  } finally {
    let cursor = '0';
    let rounds = 0;
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000).catch(() => ['0', []] as [string, string[]]);
      if (keys.length) await redis.del(...keys);
      cursor = next;
    } while (cursor !== '0' && ++rounds < 100_000);
    redis.disconnect();
  }

  console.log(`rate-limit store checks (3 rules each, ${USERS} users, ${SECONDS} s per row, node ${process.version})`);
  console.log('| store  | in flight | checks | checks/s | p50 ms | p99 ms |');
  console.log('|--------|----------:|-------:|---------:|-------:|-------:|');
  for (const r of results) {
    console.log(
      `| ${r.store.padEnd(6)} | ${String(r.inFlight).padStart(9)} | ${String(r.checks).padStart(6)} | ${String(r.perSecond).padStart(8)} | ${r.p50.toFixed(3).padStart(6)} | ${r.p99.toFixed(3).padStart(6)} |`,
    );
  }
}

await main();
