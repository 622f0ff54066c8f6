/**
 * Chat relay over WebSocket, three processes: the simulator (bench/ws/sim.ts), the gateway
 * (bench/ws/server.ts, its real chat pipeline with the simulator as upstream) and this one,
 * the clients. N chats of D text deltas run at once over C connections. Every event is timed
 * from the moment the simulator wrote it (its wall-clock stamps) to the moment a client's
 * `message` handler sees it.
 *
 * Baseline, same run: the same N streams read straight from the simulator over SSE by this
 * process. "Added" latency is the gateway's percentile minus the baseline's.
 *
 *   npx tsx bench/ws/chats.ts [chats=1000] [deltas=50] [connections=100] [deltaDelayMs=20]
 */
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { createParser } from 'eventsource-parser';
import { WebSocket } from 'ws';
import { startChild } from './child.js';

const chats = Number(process.argv[2] ?? 1000);
const deltas = Number(process.argv[3] ?? 50);
const connections = Number(process.argv[4] ?? 100);
const deltaDelayMs = Number(process.argv[5] ?? 20);
const key = `sk-ant-api03-${randomBytes(24).toString('hex')}`;
const wallNow = () => performance.timeOrigin + performance.now();

/** Arrival times of one stream's events, by index, and the message id from message_start. */
interface Arrivals {
  messageId: string | null;
  at: number[];
}

function body(i: number, phase: string): Record<string, unknown> {
  const words = Array.from({ length: deltas * 2 }, (_, w) => `w${w}`).join(' ');
  return { model: 'claude-sonnet-4-5', max_tokens: 4096, messages: [{ role: 'user', content: `${phase} chat ${i}: ${words}` }] };
}

const sim = await startChild<{ url: string }>('./sim.ts', { BENCH_KEY: key, BENCH_DELTAS: String(deltas), BENCH_DELTA_DELAY_MS: String(deltaDelayMs) });
const gateway = await startChild<{ url: string; tokens: string[] }>('./server.ts', {
  BENCH_GATEWAY_ENV: JSON.stringify({
    ANTHROPIC_BASE_URL: sim.ready.url,
    ANTHROPIC_API_KEY: key,
    DEMO_MODE: 'off',
    RATE_LIMIT_RPM: '0',
    RATE_LIMIT_RPD: '0',
    RATE_LIMIT_TPM: '0',
    RATE_LIMIT_CONCURRENT: '0',
  }),
});

/** Baseline: the streams read directly from the simulator. */
async function direct(): Promise<Arrivals[]> {
  return Promise.all(
    Array.from({ length: chats }, async (_, i) => {
      const arrivals: Arrivals = { messageId: null, at: [] };
      const res = await fetch(`${sim.ready.url}/v1/messages`, {
        method: 'POST',
        headers: { 'x-api-key': key, 'anthropic-version': '2023-06-01', 'content-type': 'application/json' },
        body: JSON.stringify({ ...body(i, 'direct'), stream: true }),
      });
      const parser = createParser({
        onEvent: (e) => {
          arrivals.at.push(wallNow());
          if (arrivals.messageId === null) arrivals.messageId = (JSON.parse(e.data) as { message?: { id?: string } }).message?.id ?? null;
        },
      });
      const decoder = new TextDecoder();
      for await (const chunk of res.body!) parser.feed(decoder.decode(chunk as Uint8Array, { stream: true }));
      return arrivals;
    }),
  );
}

/** Through the gateway: `chats` chats over C WebSocket connections. */
async function relayed(chats: number, prefix: string): Promise<{ arrivals: Arrivals[]; ends: Record<string, number> }> {
  const arrivals: Arrivals[] = Array.from({ length: chats }, () => ({ messageId: null, at: [] }));
  const ends: Record<string, number> = {};
  let finished = 0;
  let resolveAll!: () => void;
  const all = new Promise<void>((r) => (resolveAll = r));
  const { url, tokens } = gateway.ready;
  const sockets = await Promise.all(
    Array.from({ length: connections }, (_, c) =>
      new Promise<WebSocket>((resolve, reject) => {
        const ws = new WebSocket(url, ['portcullis.v1', `bearer.${tokens[c % tokens.length]}`], { perMessageDeflate: false });
        ws.on('message', (data) => {
          const at = wallNow();
          const frame = JSON.parse(String(data)) as { type: string; id?: string; seq?: number; outcome?: string; event?: { message?: { id?: string } } };
          if (frame.type === 'welcome') return resolve(ws);
          const a = arrivals[Number(frame.id?.slice(1))];
          if (frame.type === 'chat.event' && a) {
            a.at[frame.seq!] = at;
            if (frame.seq === 0) a.messageId = frame.event?.message?.id ?? null;
          } else if (frame.type === 'chat.done' || frame.type === 'chat.error') {
            const end = frame.type === 'chat.done' ? frame.outcome! : 'error';
            ends[end] = (ends[end] ?? 0) + 1;
            if (++finished === chats) resolveAll();
          }
        });
        ws.once('error', reject);
      }),
    ),
  );
  for (let i = 0; i < chats; i++) sockets[i % connections]!.send(JSON.stringify({ type: 'chat', id: `${prefix}${i}`, request: body(i, `relayed ${prefix}`) }));
  await all;
  for (const ws of sockets) ws.close();
  return { arrivals, ends };
}

function latencies(arrivals: Arrivals[], stamps: Record<string, number[]>): { n: number; p50: number; p90: number; p99: number; max: number } {
  const xs: number[] = [];
  for (const a of arrivals) {
    const sent = a.messageId ? stamps[a.messageId] : undefined;
    if (!sent) continue;
    a.at.forEach((at, i) => {
      if (sent[i] !== undefined) xs.push(at - sent[i]!);
    });
  }
  xs.sort((a, b) => a - b);
  const q = (p: number) => Number(xs[Math.min(xs.length - 1, Math.floor(p * xs.length))]!.toFixed(2));
  return { n: xs.length, p50: q(0.5), p90: q(0.9), p99: q(0.99), max: q(1) };
}

// Warm-up (JIT, connection pools), not measured: a tenth of the chats through the gateway.
await relayed(Math.max(1, Math.floor(chats / 10)), 'w');
type Stamps = { stamps: Record<string, number[]>; maxOpen: number };
await sim.ask<Stamps>('stamps');
let t0 = performance.now();
const base = await direct();
const directSeconds = (performance.now() - t0) / 1000;
const directOpen = (await sim.ask<Stamps>('stamps')).maxOpen;
t0 = performance.now();
const { arrivals, ends } = await relayed(chats, 'c');
const relayedSeconds = (performance.now() - t0) / 1000;
const { stamps, maxOpen: relayedOpen } = await sim.ask<Stamps>('stamps');
const { byOutcome: usageRows } = await gateway.ask<{ byOutcome: Record<string, number> }>('usage');
const b = latencies(base, stamps);
const g = latencies(arrivals, stamps);
const events = arrivals.reduce((n, a) => n + a.at.length, 0);
console.log(
  JSON.stringify(
    {
      chats,
      deltas,
      connections,
      delta_delay_ms: deltaDelayMs,
      direct: { seconds: Number(directSeconds.toFixed(2)), upstream_streams_at_once: directOpen, latency_ms: b },
      gateway: { seconds: Number(relayedSeconds.toFixed(2)), upstream_streams_at_once: relayedOpen, events, events_per_second: Math.round(events / relayedSeconds), ends, usage_rows_all_phases: usageRows, latency_ms: g },
      added_ms: { p50: Number((g.p50 - b.p50).toFixed(2)), p90: Number((g.p90 - b.p90).toFixed(2)), p99: Number((g.p99 - b.p99).toFixed(2)) },
    },
    null,
    2,
  ),
);
await gateway.stop();
await sim.stop();
