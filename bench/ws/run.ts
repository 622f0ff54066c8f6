/**
 * WebSocket load: N authenticated idle connections against one gateway process.
 * Reports the server's memory growth per connection (heap and RSS, after GC) and the
 * connection set-up rate (each upgrade verifies a JWT and reads the session state).
 *
 *   npx tsx bench/ws/run.ts [connections=10000] [concurrency=200]
 */
import { WebSocket } from 'ws';
import { startChild } from './child.js';

const total = Number(process.argv[2] ?? 10_000);
const concurrency = Number(process.argv[3] ?? 200);

type MemoryReply = { memory: NodeJS.MemoryUsage; connections: number };
const gateway = await startChild<{ url: string; tokens: string[] }>('./server.ts');
const { url, tokens } = gateway.ready;
const ask = (cmd: string) => gateway.ask<MemoryReply>(cmd);
const sockets: WebSocket[] = [];
const open = (i: number) =>
  new Promise<void>((resolve, reject) => {
    const ws = new WebSocket(url, ['portcullis.v1', `bearer.${tokens[i % tokens.length]}`], { perMessageDeflate: false });
    ws.once('message', () => resolve()); // the welcome frame: fully set up
    ws.once('error', reject);
    sockets.push(ws);
  });

// Warm up (JIT, caches), then measure from a settled baseline.
await Promise.all(Array.from({ length: 50 }, (_, i) => open(i)));
const before = (await ask('memory')).memory;
const started = process.hrtime.bigint();
let next = 50;
const limit = total + 50;
await Promise.all(
  Array.from({ length: concurrency }, async () => {
    while (next < limit) await open(next++);
  }),
);
const seconds = Number(process.hrtime.bigint() - started) / 1e9;
await new Promise((r) => setTimeout(r, 500));
const after = await ask('memory');
const per = (a: number, b: number) => ((b - a) / total / 1024).toFixed(2);
console.log(JSON.stringify({
  connections: after.connections,
  setup_seconds: Number(seconds.toFixed(2)),
  setups_per_second: Math.round(total / seconds),
  heap_kb_per_connection: Number(per(before.heapUsed, after.memory.heapUsed)),
  rss_kb_per_connection: Number(per(before.rss, after.memory.rss)),
  external_kb_per_connection: Number(per(before.external + before.arrayBuffers, after.memory.external + after.memory.arrayBuffers)),
  server_rss_mb: Math.round(after.memory.rss / 1048576),
}, null, 2));
for (const ws of sockets) ws.terminate();
await gateway.stop();
