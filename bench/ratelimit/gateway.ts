/**
 * The gateway's proxy throughput with rate limiting on vs off, for the memory and the
 * Redis store, in one run; then the stores' raw checks per second (bench/ratelimit/store.ts).
 *
 *   npx tsx bench/ratelimit/gateway.ts
 *   BENCH_SECONDS=4 BENCH_ROUNDS=9 BENCH_REDIS_URL=redis://127.0.0.1:6379 npx tsx bench/ratelimit/gateway.ts
 *
 * Each measurement: the gateway in a child process (SQLite, the simulator as upstream),
 * autocannon with 50 connections POSTing non-streaming /v1/messages for BENCH_SECONDS after
 * a 1 s warm-up, requests spread over 50 users' personal tokens. "on" = requests/minute,
 * requests/day, tokens/minute, streams, failed-auth and per-IP limits all enforced (high
 * enough that nothing is refused); "off" = every one of them 0, so the limiter is never
 * called. Configurations are interleaved per round (on/off order alternating); each
 * measurement starts its own gateway process (a process keeps the speed it started with on
 * this shared machine: same-code processes have measured up to 40% apart), and the on/off
 * ratios are the medians of the rounds' own ratios. 9 rounds by default (an odd count, enough
 * for that lottery to even out). Beside req/s, the gateway process's CPU time per request
 * (all its threads, `process.cpuUsage`) for the same window: "off/on (CPU per request)" is the
 * throughput ratio a CPU-bound gateway would show, a second view of the same cost (on a shared
 * machine it varies between rounds too). With Redis it leaves out redis-server's own CPU,
 * which shares this machine's cores. Third view, "CPU ÷ load CPU": the gateway's CPU per
 * request divided by this process's (the simulator and autocannon, the same work per request
 * in every configuration) over the same window, which cancels the machine's speed changing
 * between measurements.
 */
import { execFileSync, fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import { Redis } from 'ioredis';
import { cpuOf } from '../commands.js';
import { buildShipped, shipped } from '../shipped.js';
import { median } from '../stats.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 4);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 9);
const CONNECTIONS = 50;
const REDIS_URL = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
const KEY = 'sk-bench-ratelimit';
const BODY = JSON.stringify({ model: 'claude-haiku-4-5', max_tokens: 64, messages: [{ role: 'user', content: 'hello there, how are you' }] });

const ON = {
  RATE_LIMIT_RPM: '10000000',
  RATE_LIMIT_RPD: '100000000',
  RATE_LIMIT_TPM: '1000000000',
  RATE_LIMIT_CONCURRENT: '10000',
  RATE_LIMIT_AUTH_FAILURES_PER_MIN: '1000',
  RATE_LIMIT_IP_AUTH_PER_MIN: '1000',
};
const OFF = Object.fromEntries(Object.keys(ON).map((k) => [k, '0']));

interface Measurement {
  store: 'memory' | 'redis';
  limits: 'on' | 'off';
  rps: number;
  /** The gateway process's CPU time per request (µs, every thread): steadier than req/s on a shared machine. */
  cpuPerRequest: number;
  /** This process's CPU per request over the same window (the simulator and autocannon): the same work in every configuration. */
  loadCpuPerRequest: number;
  p50: number;
  p99: number;
  non2xx: number;
}

async function measure(simUrl: string, store: Measurement['store'], limits: Measurement['limits'], prefix: string): Promise<Measurement> {
  const child = fork(fileURLToPath(new URL('./gateway-server.ts', import.meta.url)), [], {
    execArgv: ['--import', 'tsx'],
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
    env: {
      PATH: process.env.PATH,
      ANTHROPIC_BASE_URL: simUrl,
      ANTHROPIC_API_KEY: KEY,
      BENCH_USERS: '50',
      ...(limits === 'on' ? ON : OFF),
      ...(store === 'redis' ? { REDIS_URL, REDIS_KEY_PREFIX: prefix } : {}),
    },
  });
  const [ready] = (await once(child, 'message')) as [{ url: string; tokens: string[] }];
  let next = 0;
  const options = {
    url: `${ready.url}/v1/messages`,
    connections: CONNECTIONS,
    method: 'POST' as const,
    headers: { 'content-type': 'application/json', 'anthropic-version': '2023-06-01' },
    body: BODY,
    requests: [
      {
        setupRequest: (req: { headers?: Record<string, string> }) => {
          req.headers = { ...req.headers, 'x-api-key': ready.tokens[next++ % ready.tokens.length]! };
          return req;
        },
      },
    ],
  };
  await autocannon({ ...options, duration: 1 });
  const cpuBefore = await cpuOf(child);
  const loadBefore = process.cpuUsage();
  const result = await autocannon({ ...options, duration: SECONDS });
  const load = process.cpuUsage(loadBefore);
  const cpuPerRequest = (await cpuOf(child)) - cpuBefore;
  child.send({ cmd: 'stop' });
  await once(child, 'exit');
  const served = Math.max(1, result.requests.total);
  return { store, limits, rps: result.requests.average, cpuPerRequest: cpuPerRequest / served, loadCpuPerRequest: (load.user + load.system) / served, p50: result.latency.p50, p99: result.latency.p99, non2xx: result.non2xx + result.errors };
}

async function clean(prefix: string): Promise<void> {
  const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
  let cursor = '0';
  let rounds = 0;
  do {
    const [nextCursor, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
    if (keys.length) await redis.del(...keys);
    cursor = nextCursor;
  } while (cursor !== '0' && ++rounds < 100_000);
  redis.disconnect();
}


async function main(): Promise<void> {
  buildShipped();
  const { buildSimulator } = await shipped();
  const sim = await buildSimulator({ keys: [KEY], maxLoggedRequests: 10 });
  const simUrl = await sim.listen();
  const prefix = `bench:${randomBytes(4).toString('hex')}:`;
  const all: Measurement[] = [];
  try {
    for (let round = 0; round < ROUNDS; round++) {
      for (const store of ['memory', 'redis'] as const) {
        // Alternate which goes first, so a drift in machine load does not favour one side.
        for (const limits of round % 2 === 0 ? (['off', 'on'] as const) : (['on', 'off'] as const)) {
          const m = await measure(simUrl, store, limits, `${prefix}${round}:${limits}:`);
          all.push(m);
          console.error(`round ${round + 1}: ${store} ${limits}: ${Math.round(m.rps)} req/s, ${m.cpuPerRequest.toFixed(1)} µs CPU/request (${(m.cpuPerRequest / m.loadCpuPerRequest).toFixed(2)}× the load's), p50 ${m.p50} ms, p99 ${m.p99} ms, non-2xx ${m.non2xx}`);
        }
      }
    }
  } finally {
    await sim.close();
    await clean(prefix).catch(() => {});
  }

  console.log(`\ngateway proxy throughput, limiting on vs off (${CONNECTIONS} connections, ${SECONDS} s, median of ${ROUNDS} rounds; ratios: median of the rounds' ratios; node ${process.version})`);
  console.log('| store  | limits | req/s | gateway CPU µs/request | gateway CPU ÷ load CPU | p50 ms | p99 ms | non-2xx | on/off (req/s) | off/on (CPU per request) | off/on (CPU ÷ load CPU) |');
  console.log('|--------|--------|------:|------:|------:|-------:|-------:|--------:|-------:|-------:|-------:|');
  /** One store's rounds as on/off pairs, each pair measured back to back. */
  const pairs = (store: Measurement['store']) =>
    Array.from({ length: ROUNDS }, (_, i) => {
      const pair = all.filter((m) => m.store === store).slice(i * 2, i * 2 + 2);
      return { off: pair.find((m) => m.limits === 'off')!, on: pair.find((m) => m.limits === 'on')! };
    });
  const norm = (m: Measurement) => m.cpuPerRequest / m.loadCpuPerRequest;
  for (const store of ['memory', 'redis'] as const) {
    const row = (limits: 'on' | 'off') => {
      const ms = all.filter((m) => m.store === store && m.limits === limits);
      return { rps: median(ms.map((m) => m.rps)), cpu: median(ms.map((m) => m.cpuPerRequest)), norm: median(ms.map(norm)), p50: median(ms.map((m) => m.p50)), p99: median(ms.map((m) => m.p99)), non2xx: ms.reduce((s, m) => s + m.non2xx, 0) };
    };
    // The ratios are medians of the rounds' own ratios (each pair measured back to back, so
    // the machine's speed drifting between rounds cancels), as bench/proxy reports them.
    const ps = pairs(store);
    const pct = (xs: number[]) => `${(median(xs) * 100).toFixed(1)}%`;
    for (const [limits, r] of [['off', row('off')], ['on', row('on')]] as const) {
      const ratio = limits === 'on' ? pct(ps.map((p) => p.on.rps / p.off.rps)) : '';
      const cpuRatio = limits === 'on' ? pct(ps.map((p) => p.off.cpuPerRequest / p.on.cpuPerRequest)) : '';
      const normRatio = limits === 'on' ? pct(ps.map((p) => norm(p.off) / norm(p.on))) : '';
      console.log(`| ${store.padEnd(6)} | ${limits.padEnd(6)} | ${Math.round(r.rps)} | ${r.cpu.toFixed(1)} | ${r.norm.toFixed(2)} | ${r.p50} | ${r.p99} | ${r.non2xx} | ${ratio} | ${cpuRatio} | ${normRatio} |`);
    }
  }
  // Per-round ratios show the noise of a shared machine.
  for (const store of ['memory', 'redis'] as const) {
    const ratios = pairs(store).map(
      ({ on, off }) => `${((on.rps / off.rps) * 100).toFixed(1)}% (CPU ${((off.cpuPerRequest / on.cpuPerRequest) * 100).toFixed(1)}%, ÷ load ${((norm(off) / norm(on)) * 100).toFixed(1)}%)`,
    );
    console.log(`${store} on/off per round, req/s (CPU per request, CPU ÷ load CPU): ${ratios.join(', ')}`);
  }

  console.log('');
  const storeBench = fileURLToPath(new URL('./store.ts', import.meta.url));
  console.log(execFileSync(process.execPath, ['--import', 'tsx', storeBench], { env: { ...process.env, BENCH_REDIS_URL: REDIS_URL }, encoding: 'utf8' }));
}

await main();
