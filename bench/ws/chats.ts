/**
 * Chat relay over WebSocket: N concurrent chats of D text deltas from the simulator through
 * the gateway's WebSocket server, one process. Reports the per-event latency the gateway
 * adds: from the moment the chat pipeline yields an event (parsed from the simulator's SSE)
 * to the moment the client's `message` handler sees its chat.event (p50/p99/max).
 * Until the integrator's pipeline is on main it uses the test suite's simulator pipeline.
 *
 *   npx tsx bench/ws/chats.ts [chats=1000] [deltas=50] [connections=100]
 */
import { performance } from 'node:perf_hooks';
import { WebSocket } from 'ws';
import type { ChatPipeline } from '../../src/chat/pipeline.js';
import { buildSimulator } from '../../src/simulator/index.js';
import { accessToken, chatRequest, makeUser, simulatorPipeline, startApp } from '../../test/realtime/helpers.js';

const chats = Number(process.argv[2] ?? 1000);
const deltas = Number(process.argv[3] ?? 50);
const connections = Number(process.argv[4] ?? 100);

const sim = await buildSimulator({ deltas, deltaDelayMs: 10 });
const inner = simulatorPipeline(await sim.listen());
const yielded = new Map<string, number>();
const timed: Pick<ChatPipeline, 'start'> = {
  async start(options) {
    const tag = String((options.request.metadata as { user_id?: string } | undefined)?.user_id);
    const run = await inner.start(options);
    return {
      done: run.done,
      events: (async function* () {
        let seq = 0;
        for await (const event of run.events) {
          yielded.set(`${tag}:${seq++}`, performance.now());
          yield event;
        }
      })(),
    };
  },
};
const t = await startApp({ WS_MAX_CONNECTIONS_PER_USER: '100000', RATE_LIMIT_RPM: '0', RATE_LIMIT_CONCURRENT: '0' });
(t.app.services as { chat?: unknown }).chat = timed;
const user = await makeUser(t.app);
const { token } = await accessToken(t.app, user);

const latencies: number[] = [];
let finished = 0;
let events = 0;
let resolveAll!: () => void;
const all = new Promise<void>((r) => (resolveAll = r));
const sockets = await Promise.all(
  Array.from({ length: connections }, () =>
    new Promise<WebSocket>((resolve, reject) => {
      const ws = new WebSocket(t.url, ['portcullis.v1', `bearer.${token}`]);
      ws.on('message', (data) => {
        const at = performance.now();
        const frame = JSON.parse(String(data)) as { type: string; id?: string; seq?: number };
        if (frame.type === 'welcome') resolve(ws);
        else if (frame.type === 'chat.event') {
          events += 1;
          const start = yielded.get(`${frame.id}:${frame.seq}`);
          if (start !== undefined) latencies.push(at - start);
        } else if (frame.type === 'chat.done' || frame.type === 'chat.error') {
          if (++finished === chats) resolveAll();
        }
      });
      ws.once('error', reject);
    }),
  ),
);
const started = performance.now();
for (let i = 0; i < chats; i++) {
  sockets[i % connections]!.send(JSON.stringify({ type: 'chat', id: `c${i}`, request: chatRequest(`chat ${i}`, { metadata: { user_id: `c${i}` } }, deltas) }));
}
await all;
const seconds = (performance.now() - started) / 1000;
latencies.sort((a, b) => a - b);
const q = (p: number) => Number(latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))]!.toFixed(3));
console.log(JSON.stringify({ chats, deltas, connections, events, seconds: Number(seconds.toFixed(2)), events_per_second: Math.round(events / seconds), added_latency_ms: { p50: q(0.5), p90: q(0.9), p99: q(0.99), max: q(1) } }, null, 2));
for (const ws of sockets) ws.terminate();
await t.close();
await sim.close();
