/**
 * The gateway's proxy throughput with rate limiting on vs off, for the memory and the
 * Redis store, in one run; then the stores' raw checks per second (bench/ratelimit/store.ts).
 *
 *   npx tsx bench/ratelimit/gateway.ts
 *   BENCH_ROUNDS=9 BENCH_SLICES=10 BENCH_SECONDS=2 BENCH_REDIS_URL=redis://127.0.0.1:6379 npx tsx bench/ratelimit/gateway.ts
 *   BENCH_STORES=memory npx tsx bench/ratelimit/gateway.ts    (one store only: memory or redis)
 *
 * The load: autocannon with 50 connections POSTing non-streaming /v1/messages, requests
 * spread over 50 users' personal tokens, against a gateway on SQLite with the simulator as
 * upstream (in this process). "on" = requests/minute, requests/day, tokens/minute, streams,
 * failed-auth and per-IP limits all enforced (high enough that nothing is refused); "off" =
 * every one of them 0, so the limiter is never called.
 *
 * Each round starts ONE child process serving two gateways, on and off, each with its own
 * database (gateway-server.ts), and loads them in turn: after 1 s of warm-up each,
 * BENCH_SLICES pairs of BENCH_SECONDS slices, which goes first alternating. Both sides
 * of the comparison so share one process: on this machine a process keeps the speed it
 * started with, and two processes running the same code have measured up to 40% apart for
 * their whole life (docs/benchmarks.md), which decided earlier separate-process runs of this
 * bench round by round. Fresh processes per round (BENCH_ROUNDS, 9 by default) still
 * sample that lottery; a round's on/off is its requests served with limits on over those
 * served off (the same time each), the result is the median of the rounds. The defaults
 * (9 rounds of 10 slice pairs, about 15 minutes) are what it takes on a machine whose speed
 * swings within seconds to measure a cost of a few percent to within about a point; runs of
 * 5–7 rounds of 3–5 pairs landed up to 7 points apart.
 *
 * Beside req/s, the process's CPU time per request (all its threads, `process.cpuUsage`)
 * over each slice: "off/on (CPU per request)" is the throughput ratio a CPU-bound gateway
 * would show. With Redis it leaves out redis-server's own CPU, which shares this machine's
 * cores. Third view, "CPU ÷ load CPU": that divided by this process's CPU per request (the
 * simulator and autocannon, the same work per request in every configuration) over the same
 * window, which cancels the machine's speed changing between slices.
 */
import { execFileSync, fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import { Redis } from 'ioredis';
import { cpuOf } from '../commands.js';
import { buildShipped, shipped } from '../shipped.js';
import { median } from '../stats.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 2);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 9);
const SLICES = Number(process.env.BENCH_SLICES ?? 10);
const STORES = (process.env.BENCH_STORES ?? 'memory,redis').split(',') as Array<'memory' | 'redis'>;
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

interface Slice {
  store: 'memory' | 'redis';
  limits: 'on' | 'off';
  /** Which gateway process (round) served it. */
  round: number;
  requests: number;
  rps: number;
  /** The gateway process's CPU time per request (µs, every thread): steadier than req/s on a shared machine. */
  cpuPerRequest: number;
  /** This process's CPU per request over the same window (the simulator and autocannon): the same work in every configuration. */
  loadCpuPerRequest: number;
  p50: number;
  p99: number;
  non2xx: number;
}

interface Served {
  url: string;
  tokens: string[];
}

/** One process holding both gateways, `on` and `off`, with `store` for its limits. */
async function startPair(simUrl: string, store: Slice['store'], prefix: string): Promise<{ child: ChildProcess; gateways: Record<'on' | 'off', Served> }> {
  const child = fork(fileURLToPath(new URL('./gateway-server.ts', import.meta.url)), [], {
    execArgv: ['--import', 'tsx'],
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
    env: {
      PATH: process.env.PATH,
      ANTHROPIC_BASE_URL: simUrl,
      ANTHROPIC_API_KEY: KEY,
      BENCH_USERS: '50',
      BENCH_GATEWAYS: JSON.stringify({ on: ON, off: OFF }),
      ...(store === 'redis' ? { REDIS_URL, REDIS_KEY_PREFIX: prefix } : {}),
    },
  });
  const [gateways] = (await once(child, 'message')) as [Record<'on' | 'off', Served>];
  return { child, gateways };
}

/** autocannon options for POST /v1/messages on `gateway`, spreading requests over its users. */
function loadOf(gateway: Served) {
  let next = 0;
  return {
    url: `${gateway.url}/v1/messages`,
    connections: CONNECTIONS,
    method: 'POST' as const,
    headers: { 'content-type': 'application/json', 'anthropic-version': '2023-06-01' },
    body: BODY,
    requests: [
      {
        setupRequest: (req: { headers?: Record<string, string> }) => {
          req.headers = { ...req.headers, 'x-api-key': gateway.tokens[next++ % gateway.tokens.length]! };
          return req;
        },
      },
    ],
  };
}

/** One slice: `seconds` of load on one gateway of the pair, with both processes' CPU over the same window. */
async function slice(child: ChildProcess, gateway: Served, seconds: number): Promise<Omit<Slice, 'store' | 'limits' | 'round'>> {
  const cpuBefore = await cpuOf(child);
  const loadBefore = process.cpuUsage();
  const result = await autocannon({ ...loadOf(gateway), duration: seconds });
  const load = process.cpuUsage(loadBefore);
  const cpu = (await cpuOf(child)) - cpuBefore;
  const served = Math.max(1, result.requests.total);
  return { requests: result.requests.total, rps: result.requests.average, cpuPerRequest: cpu / served, loadCpuPerRequest: (load.user + load.system) / served, p50: result.latency.p50, p99: result.latency.p99, non2xx: result.non2xx + result.errors };
}

/**
 * One round for one store: a fresh process with both gateways, each warmed for 1 s, then
 * SLICES pairs of slices taking turns (which goes first alternates).
 */
async function round(simUrl: string, store: Slice['store'], n: number, prefix: string): Promise<Slice[]> {
  const { child, gateways } = await startPair(simUrl, store, prefix);
  try {
    for (const limits of ['off', 'on'] as const) await autocannon({ ...loadOf(gateways[limits]), duration: 1 });
    const slices: Slice[] = [];
    for (let i = 0; i < SLICES; i++) {
      for (const limits of (n + i) % 2 === 0 ? (['off', 'on'] as const) : (['on', 'off'] as const)) {
        slices.push({ store, limits, round: n, ...(await slice(child, gateways[limits], SECONDS)) });
      }
    }
    return slices;
  } finally {
    child.send({ cmd: 'stop' });
    await once(child, 'exit');
  }
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
  const all: Slice[] = [];
  try {
    for (let n = 0; n < ROUNDS; n++) {
      for (const store of STORES) {
        const slices = await round(simUrl, store, n, `${prefix}${n}:`);
        all.push(...slices);
        for (const m of slices) {
          console.error(`round ${n + 1}: ${store} ${m.limits}: ${Math.round(m.rps)} req/s, ${m.cpuPerRequest.toFixed(1)} µs CPU/request (${(m.cpuPerRequest / m.loadCpuPerRequest).toFixed(2)}× the load's), p50 ${m.p50} ms, p99 ${m.p99} ms, non-2xx ${m.non2xx}`);
        }
      }
    }
  } finally {
    await sim.close();
    await clean(prefix).catch(() => {});
  }

  const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
  const norm = (m: Slice) => m.cpuPerRequest / m.loadCpuPerRequest;
  /** One round's on/off: requests served with limits on over requests served off (same total time each), and the same for CPU. */
  const roundRatios = (store: Slice['store'], n: number) => {
    const of = (limits: 'on' | 'off') => all.filter((m) => m.store === store && m.round === n && m.limits === limits);
    const on = of('on');
    const off = of('off');
    const cpu = (ms: Slice[]) => sum(ms.map((m) => m.cpuPerRequest * m.requests)) / sum(ms.map((m) => m.requests));
    return {
      rps: sum(on.map((m) => m.requests)) / sum(off.map((m) => m.requests)),
      cpu: cpu(off) / cpu(on),
      norm: median(off.map(norm)) / median(on.map(norm)),
    };
  };
  const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
  console.log(`\ngateway proxy throughput, limiting on vs off (${CONNECTIONS} connections; ${ROUNDS} rounds, each a fresh process serving both gateways in ${SLICES} pairs of ${SECONDS} s slices; ratios: median of the rounds' ratios; node ${process.version})`);
  console.log('| store  | limits | req/s | gateway CPU µs/request | gateway CPU ÷ load CPU | p50 ms | p99 ms | non-2xx | on/off (req/s) | off/on (CPU per request) | off/on (CPU ÷ load CPU) |');
  console.log('|--------|--------|------:|------:|------:|-------:|-------:|--------:|-------:|-------:|-------:|');
  const roundsOf = new Map(STORES.map((store) => [store, Array.from({ length: ROUNDS }, (_, n) => roundRatios(store, n))]));
  for (const store of STORES) {
    const rounds = roundsOf.get(store)!;
    for (const limits of ['off', 'on'] as const) {
      const ms = all.filter((m) => m.store === store && m.limits === limits);
      const cells = [median(ms.map((m) => m.rps)).toFixed(0), median(ms.map((m) => m.cpuPerRequest)).toFixed(1), median(ms.map(norm)).toFixed(2), median(ms.map((m) => m.p50)), median(ms.map((m) => m.p99)), sum(ms.map((m) => m.non2xx))];
      const ratios = limits === 'on' ? [pct(median(rounds.map((r) => r.rps))), pct(median(rounds.map((r) => r.cpu))), pct(median(rounds.map((r) => r.norm)))] : ['', '', ''];
      console.log(`| ${store.padEnd(6)} | ${limits.padEnd(6)} | ${[...cells, ...ratios].join(' | ')} |`);
    }
  }
  // Per-round ratios show what is left of the machine's noise.
  for (const store of STORES) {
    const rounds = roundsOf.get(store)!;
    console.log(`${store} on/off per round, req/s (CPU per request, CPU ÷ load CPU): ${rounds.map((r) => `${pct(r.rps)} (CPU ${pct(r.cpu)}, ÷ load ${pct(r.norm)})`).join(', ')}`);
  }

  console.log('');
  const storeBench = fileURLToPath(new URL('./store.ts', import.meta.url));
  console.log(execFileSync(process.execPath, ['--import', 'tsx', storeBench], { env: { ...process.env, BENCH_REDIS_URL: REDIS_URL }, encoding: 'utf8' }));
}

await main();
