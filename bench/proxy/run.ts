/**
 * Proxy overhead, in one run: the simulator directly, through the bare reference proxy
 * (bare-proxy.ts) and through the gateway (authentication by personal token, limits on,
 * usage recorded, request log line written), non-streaming and streaming (50 deltas).
 * Each server is its own child process; this process only generates load.
 *
 *   npx tsx bench/proxy/run.ts [seconds=10] [sequential=3000] [connections=50]
 *
 * Throughput: autocannon, `connections` connections, `seconds` per target and mode (each
 * fresh process first serves BENCH_WARMUP requests in each mode, harness.ts, then each
 * measurement follows a 2 s load of its own). Latency: an undici client per target at
 * concurrency 1, `sequential` requests per target and mode, the targets taking turns in
 * batches of 100, timed with process.hrtime; p50/p99 and the p50 added over direct.
 * Server CPU: each server process's CPU time (every thread) over the throughput window,
 * divided by the requests served: steadier than req/s on a shared machine; "bare/gateway CPU
 * per request" is the throughput ratio a CPU-bound gateway would reach on a machine of its own.
 * "main thread" is the event loop's share (from /proc; the rest is V8's garbage-collection
 * helpers, the gateway's usage writer and libuv's threads), "KB allocated" what the main
 * thread allocated per request (V8's GCProfiler: the heap's growth between collections), which
 * garbage collection costs in proportion to.
 * BENCH_ROUNDS=N (5 by default) repeats the throughput measurements N times and reports medians;
 * "gateway/bare throughput" is the median of each round's own ratio, its two sides measured
 * back to back (bare and gateway taking turns going first). Each round starts its own bare
 * proxy and gateway processes: on this shared machine a process keeps the speed it started
 * with, and two processes running the same code have measured up to 40% apart in CPU per
 * request for their whole life, so one pair of processes would decide the result by chance.
 * PROFILE=1 starts the gateway with --cpu-prof (profile written to bench/proxy/profiles/).
 * BENCH_COMPONENTS=1 adds a fourth target, the gateway's components without its layers
 * (components.ts), with its own ratio to the bare proxy. BENCH_BARE_DISPATCH=1 adds
 * bare-dispatch.ts, a faster bare proxy, and the gateway's ratio to it as well.
 */
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { Client } from 'undici';
import { buildShipped } from '../shipped.js';
import { median } from '../stats.js';
import { load as loadTarget, messageSender, start, stop as stopChild, warmUp } from './harness.js';

const seconds = Number(process.argv[2] ?? 10);
const sequential = Number(process.argv[3] ?? 3000);
const connections = Number(process.argv[4] ?? 50);
const KEY = `sk-ant-bench-${randomBytes(16).toString('hex')}`;

const profileArgs = process.env.PROFILE === '1' ? ['--cpu-prof', `--cpu-prof-dir=${fileURLToPath(new URL('./profiles', import.meta.url))}`] : [];
const load = (target: Target, stream: boolean, duration: number) => loadTarget(target, stream, duration, connections);

/** Requests each target gets in turn at concurrency 1 before the next target's turn. */
const LATENCY_BATCH = 100;

/**
 * p50 and p99 at concurrency 1 of every target, `n` requests each, timed with
 * process.hrtime: the targets take turns in batches of LATENCY_BATCH (which goes first
 * alternates), so a minute in which the machine is slow slows every target alike instead
 * of whichever was being measured.
 */
async function hrtimeLatencies(targets: Target[], stream: boolean, n: number) {
  const senders = targets.map((t) => {
    const client = new Client(t.url, { pipelining: 1 });
    return { client, one: messageSender(client, t.key, stream), samples: [] as number[] };
  });
  try {
    for (const s of senders) for (let i = 0; i < Math.min(300, n); i++) await s.one();
    for (let batch = 0; batch * LATENCY_BATCH < n; batch++) {
      for (const s of batch % 2 === 0 ? senders : [...senders].reverse()) {
        for (let i = 0; i < LATENCY_BATCH && s.samples.length < n; i++) {
          const t0 = process.hrtime.bigint();
          await s.one();
          s.samples.push(Number(process.hrtime.bigint() - t0) / 1e6);
        }
      }
    }
  } finally {
    await Promise.all(senders.map((s) => s.client.close()));
  }
  return senders.map(({ samples }) => {
    samples.sort((a, b) => a - b);
    const at = (q: number) => samples[Math.min(samples.length - 1, Math.floor(q * samples.length))]!;
    return { p50: at(0.5), p99: at(0.99) };
  });
}

type Target = { name: string; url: string; key: string; child: ChildProcess };
/** With BENCH_COMPONENTS=1 also the gateway's components without its layers (components.ts). */
const withComponents = process.env.BENCH_COMPONENTS === '1';
/** With BENCH_BARE_DISPATCH=1 also the bare proxy on undici's dispatch API (bare-dispatch.ts). */
const withBareDispatch = process.env.BENCH_BARE_DISPATCH === '1';
/** The bare proxy and the gateway (and the components, the dispatch bare proxy), as fresh processes. */
async function startProxies(simUrl: string): Promise<Target[]> {
  const started: Target[] = [];
  try {
    const bare = await start('bare', [simUrl]);
    started.push({ name: 'bare', url: bare.url, key: KEY, child: bare.child });
    const gateway = await start('gateway', [simUrl, KEY], { execArgv: profileArgs });
    started.push({ name: 'gateway', url: gateway.url, key: gateway.token!, child: gateway.child });
    if (withComponents) {
      const components = await start('components', [simUrl, KEY]);
      started.push({ name: 'components', url: components.url, key: components.token!, child: components.child });
    }
    if (withBareDispatch) {
      const bare = await start('bare-dispatch', [simUrl]);
      started.push({ name: 'bare-dispatch', url: bare.url, key: KEY, child: bare.child });
    }
  } catch (err) {
    started.forEach(stop);
    throw err;
  }
  return started;
}
const stop = (t: Target) => stopChild(t.child);

buildShipped();
const sim = await start('sim', [KEY]);
const direct: Target = { name: 'direct', url: sim.url, key: KEY, child: sim.child };
let targets: Target[] = [direct];

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
type Throughput = Awaited<ReturnType<typeof load>>;
const runs = new Map<string, Throughput[]>(); // `${mode}|${target}` → one per round
const ratios = new Map<string, number[]>(); // `${mode}|${target}` → target/bare req/s, per round
const rows: Array<{ mode: string; target: string; rps: number; cpu: number; mainCpu: number; allocated: number; p50: number; p99: number; seqP50: number; seqP99: number }> = [];
const modeOf = (stream: boolean) => (stream ? 'stream (50 deltas)' : 'non-streaming');
try {
  for (let round = 0; round < ROUNDS; round++) {
    targets.slice(1).forEach(stop);
    targets = [direct, ...(await startProxies(sim.url))];
    // Fresh processes (the simulator too, in the first round) are warmed up in both modes.
    for (const t of round === 0 ? targets : targets.slice(1)) for (const stream of [false, true]) await warmUp(t, stream, connections);
    for (const stream of [false, true]) {
      const mode = modeOf(stream);
      // The proxies take turns going first, so a drift in machine speed favours none.
      const order = round % 2 === 0 ? targets : [targets[0]!, ...targets.slice(1).reverse()];
      const got: Record<string, Throughput> = {};
      for (const t of order) {
        await load(t, stream, 2);
        got[t.name] = await load(t, stream, seconds);
        runs.set(`${mode}|${t.name}`, [...(runs.get(`${mode}|${t.name}`) ?? []), got[t.name]!]);
        const g = got[t.name]!;
        console.error(`round ${round + 1} ${mode} ${t.name}: ${Math.round(g.rps)} req/s, ${g.cpuPerRequest.toFixed(1)} µs CPU/request (${g.mainCpuPerRequest.toFixed(1)} main thread), ${(g.allocatedPerRequest / 1024).toFixed(1)} KB allocated/request`);
      }
      for (const t of targets.slice(2)) ratios.set(`${mode}|${t.name}`, [...(ratios.get(`${mode}|${t.name}`) ?? []), got[t.name]!.rps / got.bare!.rps]);
      if (withBareDispatch) ratios.set(`${mode}|gateway/bare-dispatch`, [...(ratios.get(`${mode}|gateway/bare-dispatch`) ?? []), got.gateway!.rps / got['bare-dispatch']!.rps]);
    }
  }
  for (const stream of [false, true]) {
    const mode = modeOf(stream);
    const latencies = await hrtimeLatencies(targets, stream, sequential);
    for (const [i, t] of targets.entries()) {
      const lat = latencies[i]!;
      const thr = runs.get(`${mode}|${t.name}`)!;
      rows.push({ mode, target: t.name, rps: median(thr.map((x) => x.rps)), cpu: median(thr.map((x) => x.cpuPerRequest)), mainCpu: median(thr.map((x) => x.mainCpuPerRequest)), allocated: median(thr.map((x) => x.allocatedPerRequest)), p50: median(thr.map((x) => x.p50)), p99: median(thr.map((x) => x.p99)), seqP50: lat.p50, seqP99: lat.p99 });
      console.error(`${mode} ${t.name}: c1 p50 ${lat.p50.toFixed(3)} ms`);
    }
  }
} finally {
  targets.forEach(stop);
}

const f = (n: number, d = 0) => n.toFixed(d);
console.log(`\n${new Date().toISOString()} · ${connections} connections × ${seconds} s · ${ROUNDS} round(s), medians · ${sequential} sequential requests\n`);
console.log('| mode | target | req/s (c50) | server CPU µs/request | main thread µs/request | KB allocated/request | c50 p50 ms | c50 p99 ms | c1 p50 ms | c1 p99 ms | c1 added p50 ms | vs direct | vs bare |');
console.log('|---|---|---|---|---|---|---|---|---|---|---|---|---|');
const summary: Record<string, number> = {};
for (const r of rows) {
  const direct = rows.find((x) => x.mode === r.mode && x.target === 'direct')!;
  const bareRow = rows.find((x) => x.mode === r.mode && x.target === 'bare')!;
  const added = r.seqP50 - direct.seqP50;
  const vsDirect = r.rps / direct.rps;
  const vsBare = r.rps / bareRow.rps;
  if (r.target !== 'direct') summary[`${r.mode} ${r.target}: added p50 ms`] = Number(added.toFixed(3));
  if (r.target !== 'direct' && r.target !== 'bare') {
    // The median of the rounds' own ratios (each pair measured back to back).
    summary[`${r.mode} ${r.target}/bare throughput`] = Number(median(ratios.get(`${r.mode}|${r.target}`)!).toFixed(3));
    summary[`${r.mode} bare/${r.target} CPU per request`] = Number((bareRow.cpu / r.cpu).toFixed(3));
  }
  console.log(
    `| ${r.mode} | ${r.target} | ${f(r.rps)} | ${f(r.cpu, 1)} | ${f(r.mainCpu, 1)} | ${f(r.allocated / 1024, 1)} | ${f(r.p50, 1)} | ${f(r.p99, 1)} | ${f(r.seqP50, 3)} | ${f(r.seqP99, 3)} | ${r.target === 'direct' ? '–' : f(added, 3)} | ${f(vsDirect * 100)}% | ${r.target === 'direct' ? '–' : `${f(vsBare * 100)}%`} |`,
  );
}
for (const [key, rs] of ratios) {
  const [mode, target] = key.split('|');
  const of = target!.includes('/') ? target : `${target}/bare`;
  console.log(`\n${mode} ${of} req/s per round: ${rs.map((x) => `${(x * 100).toFixed(1)}%`).join(', ')}`);
  if (of !== `${target}/bare`) summary[`${mode} ${of} throughput`] = Number(median(rs).toFixed(3));
}
console.log(`\n${JSON.stringify(summary, null, 2)}`);
