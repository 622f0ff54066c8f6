/**
 * One process under test for bench/proxy/run.ts, started with fork() so it never shares an
 * event loop with the load generator or with another server:
 *
 *   server.ts sim <key>               the Anthropic simulator (accepts only <key>)
 *   server.ts bare <upstream>         the bare reference proxy (bare-proxy.ts)
 *   server.ts bare-dispatch <upstream>  the faster bare proxy (bare-dispatch.ts)
 *   server.ts gateway <upstream> <key> the gateway: the key in the vault, authentication by a
 *                                     personal token, limits on (generous), usage recorded,
 *                                     one info log line per request (to /dev/null
 *                                     through `logDestination`, the destination
 *                                     `npm start` writes standard output with)
 *   server.ts components <upstream> <key> the same app's components served by
 *                                     bench/proxy/components.ts instead of the app itself
 * Both run with the V8 settings `npm start` runs with (src/runtime.ts).
 *
 * Sends `{ url, token? }` over IPC when listening; answers `{ cmd: 'cpu' }` with the process's
 * CPU time so far, `gc-start` / `gc-stop` with the bytes its main thread allocated in between;
 * exits on `{ cmd: 'stop' }`. BENCH_LOG_LEVEL overrides the gateway's
 * log level (info by default).
 * With PROFILE=1 in the environment the parent adds --cpu-prof to the gateway process.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import v8 from 'node:v8';
import type { Session } from 'node:inspector/promises';
import { answerParent } from '../commands.js';
import { shipped } from '../shipped.js';
import { startBareProxy } from './bare-proxy.js';
import { startBareDispatchProxy } from './bare-dispatch.js';
import { startComponents } from './components.js';

const [role, arg1, arg2] = process.argv.slice(2);
const stops: Array<() => Promise<void>> = [];
let reply: { url: string; token?: string };

if (role === 'sim') {
  const { buildSimulator } = await shipped();
  const sim = await buildSimulator({ keys: [arg1!], maxLoggedRequests: 1 });
  reply = { url: await sim.listen({ port: 0, host: '127.0.0.1' }) };
  stops.push(() => sim.close());
} else if (role === 'bare' || role === 'bare-dispatch') {
  const bare = await (role === 'bare' ? startBareProxy : startBareDispatchProxy)(arg1!);
  reply = { url: bare.url };
  stops.push(() => bare.close());
} else if (role === 'gateway' || role === 'components') {
  const { buildApp, loadConfig, createEngine, logDestination, tuneV8 } = await shipped();
  tuneV8(); // as main.ts does
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-bench-proxy-'));
  const config = loadConfig({
    PORT: '0',
    HOST: '127.0.0.1',
    LOG_LEVEL: process.env.BENCH_LOG_LEVEL ?? 'info',
    NODE_ENV: 'production',
    DATA_DIR: dir,
    DATABASE_URL: `sqlite:${join(dir, 'bench.db')}`,
    PORTCULLIS_MASTER_KEY: Buffer.alloc(32, 7).toString('base64'),
    ANTHROPIC_BASE_URL: arg1!,
    ANTHROPIC_API_KEY: arg2!,
    DEMO_MODE: 'off',
    // Limits on, generous enough never to refuse the benchmark's load.
    RATE_LIMIT_RPM: '10000000',
    RATE_LIMIT_RPD: '100000000',
    RATE_LIMIT_TPM: '1000000000',
    RATE_LIMIT_CONCURRENT: '10000',
    RATE_LIMIT_AUTH_FAILURES_PER_MIN: '0',
    UAUTH_CLIENT_ID: 'bench',
    UAUTH_CLIENT_SECRET: 'bench-secret',
    PUBLIC_URL: 'http://127.0.0.1:8080',
    // Experiments: BENCH_SETTINGS='{"RATE_LIMIT_RPM":"0"}' overrides any setting above.
    ...(JSON.parse(process.env.BENCH_SETTINGS ?? '{}') as Record<string, string>),
  });
  const engine = await createEngine(config);
  const app = await buildApp(config, engine, { logStream: logDestination('/dev/null') });
  const user = await app.services.users.create({ issuer: 'https://idp.bench', subject: 'bench.crypto', roles: ['member'] });
  const { token } = await app.services.personalTokens.create(user.id, { name: 'bench' });
  if (role === 'components') {
    await app.ready();
    const components = await startComponents(arg1!, app);
    reply = { url: components.url, token };
    stops.push(() => components.close());
  } else {
    await app.listen({ port: 0, host: '127.0.0.1' });
    const address = app.server.address();
    if (!address || typeof address === 'string') throw new Error('no address');
    reply = { url: `http://127.0.0.1:${address.port}`, token };
  }
  stops.push(async () => {
    await app.close();
    await engine.close();
    rmSync(dir, { recursive: true, force: true });
  });
} else {
  throw new Error(`unknown role ${role}`);
}

// HEAP_PROFILE=<file>: sample every allocation site (collected objects included) until stop.
let heapSession: Session | undefined;
if (process.env.HEAP_PROFILE && role === 'gateway') {
  const inspector = await import('node:inspector/promises');
  heapSession = new inspector.Session();
  heapSession.connect();
  await heapSession.post('HeapProfiler.startSampling', { samplingInterval: 4096, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
  stops.unshift(async () => {
    const { profile } = await heapSession!.post('HeapProfiler.stopSampling');
    const { writeFileSync } = await import('node:fs');
    writeFileSync(process.env.HEAP_PROFILE!, JSON.stringify(profile));
  });
}

// `gc-start` / `gc-stop`: the bytes the main thread allocated in between.
let gc: { profiler: v8.GCProfiler; usedAtStart: number } | undefined;
answerParent(() => Promise.all(stops.map((s) => s())), {
  'gc-start': () => {
    gc = { profiler: new v8.GCProfiler(), usedAtStart: v8.getHeapStatistics().used_heap_size };
    gc.profiler.start();
    return { ok: true };
  },
  'gc-stop': () => allocationSince(gc!),
});

/** Heap growth between collections, summed: what was allocated (promotion moves, it does not add). */
function allocationSince({ profiler, usedAtStart }: { profiler: v8.GCProfiler; usedAtStart: number }) {
  const { statistics } = profiler.stop();
  let allocated = 0;
  let used = usedAtStart;
  for (const s of statistics) {
    allocated += Math.max(0, s.beforeGC.heapStatistics.usedHeapSize - used);
    used = s.afterGC.heapStatistics.usedHeapSize;
  }
  allocated += Math.max(0, v8.getHeapStatistics().used_heap_size - used);
  return { allocated };
}
process.send!(reply);
