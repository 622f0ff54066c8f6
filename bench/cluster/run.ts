/**
 * Relayed chat throughput with 1, 2 and 3 gateway instances, and Redis commands per event.
 *
 * Per configuration: a fresh cluster from test/cluster/helpers.ts (`portcullis serve` child
 * processes on one PostgreSQL schema and one Redis key prefix), the simulator from
 * bench/ws/sim.ts in its own process as the upstream of every instance, and this process as
 * the clients: C WebSocket connections spread round-robin over the instances, N chats spread
 * over the connections, all sent at once after a small unmeasured warm-up. Events/s = chat
 * events received by the clients / wall time from the first send to the last terminal frame.
 *
 * Redis: a private `redis-server` on a free loopback port (no persistence), so that
 * `INFO commandstats` counts only this cluster's commands. Calls before/after the measured
 * phase, minus the idle rate (heartbeats) measured just before, divided by the events relayed.
 * Commands run inside a Lua script count too, so this is an upper bound on round trips;
 * `total_reads_processed` (socket reads by the server: a pipelined batch arriving at once is
 * one read) approximates the round trips, and `INFO cpu` gives Redis CPU per event.
 *
 *   npx tsx bench/cluster/run.ts [chats=300] [deltas=50] [connections=60] [deltaDelayMs=5] [runs=2]
 *
 * Environment: BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test).
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { WebSocket } from 'ws';
import { freePort } from '../../test/helpers/cli.js';
import { startCluster } from '../../test/cluster/helpers.js';
import type { Cluster } from '../../test/cluster/helpers.js';
import { startChild } from '../ws/child.js';

const chats = Number(process.argv[2] ?? 300);
const deltas = Number(process.argv[3] ?? 50);
const connections = Number(process.argv[4] ?? 60);
const deltaDelayMs = Number(process.argv[5] ?? 5);
const runs = Number(process.argv[6] ?? 2);
const databaseUrl = process.env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
/** Longest a measured phase may take before it is reported as incomplete. */
const PHASE_TIMEOUT_MS = 120_000;
const IDLE_SAMPLE_MS = 2_000;

/**
 * Calls per command name from `INFO commandstats` (commands run inside a Lua script count
 * too), plus `_reads`: `total_reads_processed` from `INFO stats`, the socket reads the server
 * did; a pipelined batch that arrives at once is one read, so this approximates round trips.
 */
async function commandCalls(redis: Redis): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const m of (await redis.info('commandstats')).matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) out[m[1]!] = Number(m[2]);
  out._reads = Number(/^total_reads_processed:(\d+)/m.exec(await redis.info('stats'))?.[1] ?? 0);
  const cpu = await redis.info('cpu');
  out._cpuMs = 1000 * (Number(/^used_cpu_sys:([\d.]+)/m.exec(cpu)?.[1] ?? 0) + Number(/^used_cpu_user:([\d.]+)/m.exec(cpu)?.[1] ?? 0));
  return out;
}

function diff(after: Record<string, number>, before: Record<string, number>): Record<string, number> {
  const d: Record<string, number> = {};
  for (const [k, v] of Object.entries(after)) if (v - (before[k] ?? 0) > 0) d[k] = v - (before[k] ?? 0);
  return d;
}
/** Commands counted (without the `_` pseudo-entries; a sample issues three INFO calls, subtracted by the callers). */
const total = (x: Record<string, number>) => Object.entries(x).reduce((a, [k, v]) => (k.startsWith('_') ? a : a + v), 0);

/** A private Redis server; stopped by its own pid. */
async function startRedis(): Promise<{ url: string; stop(): Promise<void> }> {
  const port = await freePort();
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  const url = `redis://127.0.0.1:${port}`;
  const probe = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  probe.on('error', () => {}); // refused until the server listens: retried below
  for (let i = 0; i < 50; i++) {
    try {
      await probe.connect();
      break;
    } catch {
      await sleep(100);
    }
  }
  await probe.ping();
  probe.disconnect();
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  return { url, stop: async () => (child.kill('SIGTERM'), await exited) };
}

/** Opens the connections (round-robin over instances), runs `n` chats at once, counts frames. */
async function relay(c: Cluster, tokens: string[], n: number, prefix: string) {
  let events = 0;
  let finished = 0;
  const ends: Record<string, number> = {};
  let resolveAll!: () => void;
  const all = new Promise<void>((r) => (resolveAll = r));
  const sockets = await Promise.all(
    Array.from({ length: connections }, (_, i) =>
      new Promise<WebSocket>((resolve, reject) => {
        const url = c.instances[i % c.instances.length]!.ws;
        const ws = new WebSocket(url, ['portcullis.v1', `bearer.${tokens[i % tokens.length]}`], { perMessageDeflate: false });
        ws.on('message', (data) => {
          const frame = JSON.parse(String(data)) as { type: string; outcome?: string; error?: { type?: string } };
          if (frame.type === 'welcome') return resolve(ws);
          if (frame.type === 'chat.event') events += 1;
          else if (frame.type === 'chat.done' || frame.type === 'chat.error') {
            const end = frame.type === 'chat.done' ? frame.outcome! : `error:${frame.error?.type ?? '?'}`;
            ends[end] = (ends[end] ?? 0) + 1;
            if (++finished === n) resolveAll();
          }
        });
        ws.once('error', reject);
      }),
    ),
  );
  const words = Array.from({ length: deltas * 2 }, (_, w) => `w${w}`).join(' ');
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const request = { model: 'claude-sonnet-4-5', max_tokens: 4096, messages: [{ role: 'user', content: `${prefix} chat ${i}: ${words}` }] };
    sockets[i % connections]!.send(JSON.stringify({ type: 'chat', id: `${prefix}${i}`, request }));
  }
  let timer: NodeJS.Timeout | undefined;
  const timedOut = await Promise.race([all.then(() => false), new Promise<boolean>((r) => (timer = setTimeout(() => r(true), PHASE_TIMEOUT_MS)))]);
  clearTimeout(timer);
  const seconds = (performance.now() - t0) / 1000;
  for (const ws of sockets) ws.close();
  return { events, seconds, ends, finished, timedOut };
}

async function measure(size: number, upstream: { url: string; apiKey: string }, redisUrl: string) {
  const c = await startCluster({
    databaseUrl,
    redisUrl,
    size,
    upstream,
    directRedis: true,
    env: { WS_MAX_CONNECTIONS_PER_USER: '100000', RATE_LIMIT_RPD: '0' },
  });
  try {
    const tokens: string[] = [];
    for (let u = 0; u < 10; u++) {
      const user = await c.admin.services.users.create({ issuer: 'https://idp.bench', subject: `bench${u}.crypto`, roles: ['member'] });
      for (let t = 0; t < Math.ceil(connections / 10); t++) {
        tokens.push((await c.admin.services.sessions.start(user.id, { ip: '127.0.0.1', userAgent: 'bench', issuer: 'https://idp.bench' })).accessToken);
      }
    }
    await relay(c, tokens, Math.max(size * 10, Math.floor(chats / 10)), 'w'); // warm-up, not measured
    const redis = new Redis(redisUrl);
    const idle0 = await commandCalls(redis);
    await sleep(IDLE_SAMPLE_MS);
    const before = await commandCalls(redis);
    const idlePerSecond = (total(before) - total(idle0) - 3) / (IDLE_SAMPLE_MS / 1000);
    const idleReadsPerSecond = (before._reads! - idle0._reads! - 3) / (IDLE_SAMPLE_MS / 1000);
    const r = await relay(c, tokens, chats, 'c');
    const after = await commandCalls(redis);
    redis.disconnect();
    const byCommand = diff(after, before);
    const commands = total(byCommand) - 3;
    const redisCpuMs = after._cpuMs! - before._cpuMs!;
    delete byCommand._cpuMs;
    const reads = (byCommand._reads ?? 0) - 3;
    delete byCommand._reads;
    const background = idlePerSecond * r.seconds;
    const rows = await c.engine.database.db
      .selectFrom('usage_records')
      .select(['outcome', (eb) => eb.fn.countAll<number>().as('n')])
      .groupBy('outcome')
      .execute();
    return {
      instances: size,
      events: r.events,
      seconds: Number(r.seconds.toFixed(2)),
      events_per_second: Math.round(r.events / r.seconds),
      ends: r.ends,
      timed_out: r.timedOut,
      usage_rows_incl_warmup: Object.fromEntries(rows.map((x) => [x.outcome, Number(x.n)])),
      redis_commands: commands,
      redis_idle_commands_per_second: Number(idlePerSecond.toFixed(1)),
      redis_commands_per_event: Number((commands / r.events).toFixed(3)),
      redis_commands_per_event_minus_idle: Number(((commands - background) / r.events).toFixed(3)),
      redis_socket_reads_per_event: Number((reads / r.events).toFixed(3)),
      redis_socket_reads_per_event_minus_idle: Number(((reads - idleReadsPerSecond * r.seconds) / r.events).toFixed(3)),
      redis_cpu_ms_per_1000_events: Number(((redisCpuMs / r.events) * 1000).toFixed(1)),
      redis_by_command_per_event: Object.fromEntries(
        Object.entries(byCommand)
          .sort((a, b) => b[1] - a[1])
          .slice(0, 8)
          .map(([k, v]) => [k, Number((v / r.events).toFixed(3))]),
      ),
    };
  } finally {
    await c.close();
  }
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

const key = `sk-ant-api03-${randomBytes(24).toString('hex')}`;
const redisServer = await startRedis();
const sim = await startChild<{ url: string }>('./sim.ts', { BENCH_KEY: key, BENCH_DELTAS: String(deltas), BENCH_DELTA_DELAY_MS: String(deltaDelayMs) });
try {
  const results: Array<Awaited<ReturnType<typeof measure>>> = [];
  for (let run = 0; run < runs; run++) {
    for (const size of [1, 2, 3]) {
      const r = await measure(size, { url: sim.ready.url, apiKey: key }, redisServer.url);
      await sim.ask('stamps'); // drops the simulator's per-stream stamps' high-water mark
      console.error(JSON.stringify({ run: run + 1, ...r }));
      results.push(r);
    }
  }
  const summary = [1, 2, 3].map((size) => {
    const mine = results.filter((r) => r.instances === size);
    return {
      instances: size,
      events_per_second: mine.map((r) => r.events_per_second),
      events_per_second_median: median(mine.map((r) => r.events_per_second)),
      redis_commands_per_event_median: Number(median(mine.map((r) => r.redis_commands_per_event)).toFixed(3)),
      redis_commands_per_event_minus_idle_median: Number(median(mine.map((r) => r.redis_commands_per_event_minus_idle)).toFixed(3)),
      redis_socket_reads_per_event_median: Number(median(mine.map((r) => r.redis_socket_reads_per_event)).toFixed(3)),
      redis_cpu_ms_per_1000_events_median: Number(median(mine.map((r) => r.redis_cpu_ms_per_1000_events)).toFixed(1)),
    };
  });
  const base = summary[0]!.events_per_second_median;
  console.log(
    JSON.stringify(
      { chats, deltas, connections, delta_delay_ms: deltaDelayMs, runs, summary: summary.map((s) => ({ ...s, ratio_vs_1_instance: Number((s.events_per_second_median / base).toFixed(2)) })) },
      null,
      2,
    ),
  );
} finally {
  await sim.stop();
  await redisServer.stop();
}
