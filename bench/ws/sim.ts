/**
 * The simulator for bench/ws/chats.ts, in its own process so that its CPU is not the
 * gateway's. Stamps every SSE write with `performance.timeOrigin + performance.now()` (a
 * wall-clock time comparable across processes on one machine), keyed by the message id of
 * the stream, so that the clients can measure each event from the moment the simulator
 * wrote it. With a delta delay every event is its own write, so write i is event i.
 *
 * Environment: BENCH_KEY (the only accepted API key), BENCH_DELTAS, BENCH_DELTA_DELAY_MS.
 * IPC: ready `{url}`; `{cmd:'stamps'}` → `{stamps: {[messageId]: number[]}, maxOpen}` (most
 * requests open at once since the last ask); `{cmd:'stop'}`.
 */
import type { ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import { buildSimulator } from '../../src/simulator/index.js';
import { answerParent } from '../commands.js';

const sim = await buildSimulator({
  keys: [process.env.BENCH_KEY!],
  deltas: Number(process.env.BENCH_DELTAS ?? 50),
  deltaDelayMs: Number(process.env.BENCH_DELTA_DELAY_MS ?? 20),
  maxLoggedRequests: 100_000,
});
const stamps: Record<string, number[]> = {};
/** Streams open at once, now and at most (how much concurrency reached the upstream). */
const open = { now: 0, max: 0 };
const wallNow = () => performance.timeOrigin + performance.now();

sim.app.addHook('onRequest', async (_request, reply) => {
  const raw: ServerResponse = reply.raw;
  open.max = Math.max(open.max, ++open.now);
  raw.once('close', () => (open.now -= 1));
  const write = raw.write.bind(raw) as (...args: unknown[]) => boolean;
  let times: number[] | null = null;
  raw.write = ((chunk: unknown, ...rest: unknown[]) => {
    const at = wallNow();
    if (times === null) {
      const id = /"id":"(msg_[^"]+)"/.exec(String(chunk))?.[1];
      if (id) stamps[id] = times = [];
    }
    times?.push(at);
    return write(chunk, ...rest);
  }) as ServerResponse['write'];
});

const url = await sim.listen();
answerParent(() => sim.close(), {
  stamps: () => {
    const answer = { stamps, maxOpen: open.max };
    open.max = open.now;
    return answer;
  },
});
process.send!({ url });
