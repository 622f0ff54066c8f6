/**
 * Two gateway configurations compared fairly on this shared machine: PAIRS times, a fresh
 * gateway of each (so the process lottery, docs/benchmarks.md, does not decide), then
 * ROUNDS loads of SECONDS each alternating between them (which goes first alternates too),
 * after each has served BENCH_WARMUP requests (harness.ts).
 * Reports each pair's median B/A req/s and A/B CPU per request, and the median over pairs
 * (odd counts: with an even one the median is the upper middle value, bench/stats.ts).
 *
 *   npx tsx bench/proxy/ab.ts '<env A as JSON>' '<env B as JSON>' [stream=0|1]
 *   PAIRS=3 ROUNDS=7 SECONDS=3 npx tsx bench/proxy/ab.ts '{}' '{"BENCH_SETTINGS":"{\"RATE_LIMIT_RPD\":\"0\"}"}'
 *
 * The environment reaches the gateway process (bench/proxy/server.ts): BENCH_SETTINGS
 * overrides gateway settings, NODE_OPTIONS passes node flags, BENCH_DIST=<dir> runs another
 * build (bench/shipped.ts), e.g. the last commit's, to compare two versions of the code:
 *
 *   git stash && npm run build && cp -r dist bench/proxy/profiles/dist-base && git stash pop
 *   npx tsx bench/proxy/ab.ts '{"BENCH_DIST":"bench/proxy/profiles/dist-base"}' '{}'
 */
import { randomBytes } from 'node:crypto';
import { buildShipped } from '../shipped.js';
import { median } from '../stats.js';
import { load, start, stop, warmUp } from './harness.js';
import type { Started } from './harness.js';

const [envA = '{}', envB = '{}', streamArg = '0'] = process.argv.slice(2);
const stream = streamArg === '1';
const PAIRS = Number(process.env.PAIRS ?? 3);
const ROUNDS = Number(process.env.ROUNDS ?? 7);
const SECONDS = Number(process.env.SECONDS ?? 3);
const KEY = `sk-ant-bench-${randomBytes(16).toString('hex')}`;

const env = [JSON.parse(envA) as Record<string, string>, JSON.parse(envB) as Record<string, string>];
buildShipped();
const sim = await start('sim', [KEY]);
const pairRps: number[] = [];
const pairCpu: number[] = [];
try {
  for (let pair = 0; pair < PAIRS; pair++) {
    const started: Started[] = [];
    try {
      for (const e of env) started.push(await start('gateway', [sim.url, KEY], { env: e }));
      const targets = started.map((s) => ({ url: s.url, key: s.token!, child: s.child }));
      for (const t of targets) await warmUp(t, stream, 50);
      const rps: number[] = [];
      const cpu: number[] = [];
      for (let round = 0; round < ROUNDS; round++) {
        const got = [];
        for (const i of round % 2 === 0 ? [0, 1] : [1, 0]) got[i] = await load(targets[i]!, stream, SECONDS, 50);
        const [a, b] = got as [Awaited<ReturnType<typeof load>>, Awaited<ReturnType<typeof load>>];
        rps.push(b.rps / a.rps);
        cpu.push(a.cpuPerRequest / b.cpuPerRequest);
      }
      pairRps.push(median(rps));
      pairCpu.push(median(cpu));
      console.log(`pair ${pair + 1}: B/A req/s ${median(rps).toFixed(3)}, A/B CPU per request ${median(cpu).toFixed(3)}`);
    } finally {
      for (const s of started) stop(s.child);
    }
  }
} finally {
  stop(sim.child);
}
console.log(`median over ${PAIRS} pairs: B/A req/s ${median(pairRps).toFixed(3)}, A/B CPU per request ${median(pairCpu).toFixed(3)}`);
