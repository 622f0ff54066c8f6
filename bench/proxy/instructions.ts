/**
 * Instructions per proxied request, counted by valgrind's callgrind: a measure this shared,
 * unsteady machine cannot move. Time-based figures (run.ts) drift with the machine's phase
 * and with each process's luck (single rounds 50–86% of the bare proxy on the same code); an
 * instruction count of the same code under the same load repeats to within about 2% (four
 * runs of one gateway, non-streaming: 527.3k–536.0k), though V8's choices still differ from
 * run to run (one streaming run in six came out 10% higher): repeat a run before believing
 * a small difference. It judges a change to the request path in minutes, before run.ts.
 *
 *   npx tsx bench/proxy/instructions.ts [stream=0|1] [targets=bare,gateway]
 *   INSTR_REQUESTS=2000 INSTR_WARMUP=5000 INSTR_CONNECTIONS=8   (the defaults)
 *
 * Each target (bare | gateway | components, as in run.ts) runs under callgrind with the
 * simulator outside it. After INSTR_WARMUP requests (V8 has compiled the hot code by then)
 * the counters are zeroed, INSTR_REQUESTS requests are sent at INSTR_CONNECTIONS at a time,
 * and the counters are dumped per thread. Reported per request: the main thread's
 * instructions (the event loop, which is what limits a proxy's throughput) and the other
 * threads' (V8's compiler and garbage-collection helpers, the gateway's usage writer; these
 * vary with when V8 chooses to compile, so they are shown, not compared).
 * Counted: user-space instructions only. The kernel's work (the socket reads and writes, the
 * same number of them for every target) is not, so the ratio to the bare proxy is larger
 * than the ratio of CPU time. And valgrind runs a process's threads one at a time, which
 * changes when V8's background compiles land: a piece of code can count far more here than
 * it costs at full speed (the SSE tap: 135k instructions of a streamed request here, 3–5%
 * of its CPU in a timed A/B). A difference found here is confirmed with ab.ts or run.ts.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Pool } from 'undici';
import { buildShipped } from '../shipped.js';
import { messageSender, start, stop } from './harness.js';

const stream = (process.argv[2] ?? '0') === '1';
const targets = (process.argv[3] ?? 'bare,gateway').split(',');
const REQUESTS = Number(process.env.INSTR_REQUESTS ?? 2000);
const WARMUP = Number(process.env.INSTR_WARMUP ?? 5000);
const CONNECTIONS = Number(process.env.INSTR_CONNECTIONS ?? 8);
const KEY = `sk-ant-bench-${randomBytes(16).toString('hex')}`;

/** `n` requests, `CONNECTIONS` at a time; throws on any answer but a 200. */
async function send(pool: Pool, key: string, n: number): Promise<void> {
  const one = messageSender(pool, key, stream);
  let sent = 0;
  await Promise.all(
    Array.from({ length: CONNECTIONS }, async () => {
      while (sent < n) {
        sent++; // claimed before sending, so exactly n are sent
        await one();
      }
    }),
  );
}

/** Sums callgrind's per-thread dump files: thread 1 is the main thread. */
function countsOf(dir: string): { main: number; other: number } {
  let main = 0;
  let other = 0;
  for (const file of readdirSync(dir)) {
    const part = /\.1-(\d+)$/.exec(file); // the dump made by `callgrind_control -d` (part 1)
    if (!part) continue;
    const total = /^(?:summary|totals):\s+(\d+)/m.exec(readFileSync(join(dir, file), 'utf8'));
    if (Number(part[1]) === 1) main += Number(total?.[1] ?? 0);
    else other += Number(total?.[1] ?? 0);
  }
  return { main, other };
}

buildShipped();
const sim = await start('sim', [KEY]);
const rows: { target: string; main: number; other: number }[] = [];
try {
  for (const target of targets) {
    const dir = mkdtempSync(join(tmpdir(), 'portcullis-instr-'));
    const wrapper = ['valgrind', '--tool=callgrind', '--quiet', '--separate-threads=yes', `--callgrind-out-file=${join(dir, 'callgrind.out')}`];
    const server = await start(target, target === 'bare' ? [sim.url] : [sim.url, KEY], { wrapper });
    const pool = new Pool(server.url, { connections: CONNECTIONS });
    try {
      const key = server.token ?? KEY;
      await send(pool, key, WARMUP);
      execFileSync('callgrind_control', ['--zero', String(server.child.pid)], { stdio: 'ignore' });
      await send(pool, key, REQUESTS);
      // Work a request leaves behind (its usage record, its log line) is done by now.
      await new Promise((r) => setTimeout(r, 500));
      execFileSync('callgrind_control', ['--dump', String(server.child.pid)], { stdio: 'ignore' });
      const { main, other } = countsOf(dir);
      rows.push({ target, main: main / REQUESTS, other: other / REQUESTS });
      console.error(`${target}: ${(main / REQUESTS / 1000).toFixed(1)}k instructions per request on the main thread`);
    } finally {
      await pool.close();
      stop(server.child);
      await new Promise((r) => server.child.once('exit', r));
      rmSync(dir, { recursive: true, force: true });
    }
  }
} finally {
  stop(sim.child);
}

const bare = rows.find((r) => r.target === 'bare');
console.log(`\n${stream ? 'streaming (50 deltas)' : 'non-streaming'}, ${REQUESTS} requests after ${WARMUP}, ${CONNECTIONS} at a time\n`);
console.log('| target | main thread, k instructions/request | other threads | main thread vs bare |');
console.log('|---|---:|---:|---:|');
for (const r of rows) {
  console.log(`| ${r.target} | ${(r.main / 1000).toFixed(1)} | ${(r.other / 1000).toFixed(1)} | ${bare ? `${(r.main / bare.main).toFixed(2)}×` : '–'} |`);
}
