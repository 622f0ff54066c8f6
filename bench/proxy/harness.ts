/**
 * What bench/proxy/run.ts and bench/proxy/ab.ts share: starting a server process
 * (server.ts), asking a process for its CPU time, and one load of POST /v1/messages
 * (60 words; streaming asks the simulator for 50 deltas).
 */
import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import type { Dispatcher } from 'undici';
import { ask, cpuOf, mainThreadCpuOf } from '../commands.js';

export interface Started {
  url: string;
  token?: string;
  child: ChildProcess;
}

/**
 * Forks server.ts in `role` (sim | bare | bare-dispatch | gateway | components); resolves when it listens.
 * `env` is added to this process's environment (e.g. BENCH_SETTINGS); `execArgv` to node's
 * flags; `wrapper` runs node under another program (instructions.ts: valgrind).
 */
export function start(role: string, args: string[], options: { env?: Record<string, string>; execArgv?: string[]; wrapper?: string[] } = {}): Promise<Started> {
  // With a wrapper (e.g. valgrind and its options), node runs under it: `wrapper… node flags… server.ts`.
  const [execPath, ...wrapperArgs] = options.wrapper ?? [process.execPath];
  const child = fork(fileURLToPath(new URL('./server.ts', import.meta.url)), [role, ...args], {
    execPath,
    execArgv: [...wrapperArgs, ...(options.wrapper ? [process.execPath] : []), '--import', 'tsx', ...(options.execArgv ?? [])],
    stdio: 'inherit',
    env: { ...process.env, ...options.env },
  });
  return new Promise((resolve, reject) => {
    child.once('message', (m: { url: string; token?: string }) => resolve({ ...m, child }));
    child.once('exit', (code) => reject(new Error(`${role} exited with ${code}`)));
  });
}

/** Asks a server process to exit (once it has gone, there is nobody to ask). */
export function stop(child: ChildProcess): void {
  if (child.connected) child.send({ cmd: 'stop' });
}

const words = Array.from({ length: 60 }, (_, i) => `w${i}`).join(' ');
export const bodyOf = (stream: boolean) => JSON.stringify({ model: 'claude-sonnet-4-6', max_tokens: 1024, stream, messages: [{ role: 'user', content: words }] });
export const headersOf = (key: string, stream: boolean): Record<string, string> => ({
  'x-api-key': key,
  'anthropic-version': '2023-06-01',
  'content-type': 'application/json',
  ...(stream ? { 'x-sim-fault': '{"deltas":50}' } : {}),
});

/**
 * One POST /v1/messages at a time through `dispatcher` (headers and body made once): each
 * call resolves when the whole answer is read, and throws unless it was a 200 (and, streaming,
 * the stream reached message_stop).
 */
export function messageSender(dispatcher: Dispatcher, key: string, stream: boolean): () => Promise<void> {
  const body = bodyOf(stream);
  const headers = headersOf(key, stream);
  return async () => {
    const res = await dispatcher.request({ method: 'POST', path: '/v1/messages', headers, body });
    const text = await res.body.text();
    if (res.statusCode !== 200 || (stream && !text.includes('message_stop'))) throw new Error(`status ${res.statusCode}: ${text.slice(0, 200)}`);
  };
}

/**
 * Requests a fresh server process serves in each mode before any of its measurements:
 * BENCH_WARMUP (10,000 by default). A count, not a duration, so that a slower machine warms
 * a process as much as a faster one: V8 compiles a request's functions with its optimising
 * compiler only once they have run often enough, and until it has finished the process
 * spends CPU on compiling (in V8's helper threads) and runs slower code. On a machine three
 * times slower than the one the 2 s warm-up was chosen on, the gateway was still compiling
 * 8 s into the load (docs/benchmarks.md, session 12).
 */
export const WARM_UP_REQUESTS = Number(process.env.BENCH_WARMUP ?? 10_000);

/** autocannon's POST /v1/messages through `connections` connections, for `until.duration` s or `until.amount` requests. */
function messagesLoad(target: { url: string; key: string }, stream: boolean, connections: number, until: { duration: number } | { amount: number }) {
  return autocannon({ url: `${target.url}/v1/messages`, method: 'POST', connections, ...until, headers: headersOf(target.key, stream), body: bodyOf(stream) });
}

/** Throws unless every answer of a load was a 2xx. */
function requireSuccess(url: string, result: { non2xx: number; errors: number }, during = ''): void {
  if (result.non2xx > 0 || result.errors > 0) throw new Error(`${url}: ${result.non2xx} non-2xx answers, ${result.errors} errors${during}`);
}

/** `requests` POST /v1/messages through `connections` connections, unmeasured. */
export async function warmUp(target: { url: string; key: string }, stream: boolean, connections: number, requests = WARM_UP_REQUESTS): Promise<void> {
  if (requests <= 0) return;
  requireSuccess(target.url, await messagesLoad(target, stream, connections, { amount: requests }), ' while warming up');
}

/**
 * autocannon against `url`/v1/messages for `duration` s; req/s, latency, and per request the
 * target's CPU (all threads, and its main thread alone) and the bytes its main thread allocated.
 */
export async function load(target: { url: string; key: string; child: ChildProcess }, stream: boolean, duration: number, connections: number) {
  const pid = target.child.pid!;
  await ask(target.child, 'gc-start');
  const cpuBefore = await cpuOf(target.child);
  const mainBefore = mainThreadCpuOf(pid);
  const result = await messagesLoad(target, stream, connections, { duration });
  const cpu = (await cpuOf(target.child)) - cpuBefore;
  const mainAfter = mainThreadCpuOf(pid);
  const { allocated } = await ask<{ allocated: number }>(target.child, 'gc-stop');
  requireSuccess(target.url, result);
  const served = Math.max(1, result.requests.total);
  return {
    rps: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    /** µs of CPU per request, every thread of the server process. */
    cpuPerRequest: cpu / served,
    /** µs of CPU per request on the main thread (the event loop); NaN where /proc is missing. */
    mainCpuPerRequest: mainBefore === undefined || mainAfter === undefined ? Number.NaN : (mainAfter - mainBefore) / served,
    /** Bytes the main thread allocated per request (every collection's heap growth, summed). */
    allocatedPerRequest: allocated / served,
  };
}
