/**
 * A second reference, faster than bare-proxy.ts (session 10): the request body read whole
 * first, then undici's dispatch handler API writing the answer straight to the client, with no
 * promise, no Readable and no pipe per response. It shows what the reference leaves on the
 * table (reading the body as a stream and piping the answer cost the bare proxy about 15%
 * of its throughput here; docs/benchmarks.md, session 10). `BENCH_BARE_DISPATCH=1 npx tsx
 * bench/proxy/run.ts` adds it as a fourth target, with the gateway's ratio to it.
 */
import http from 'node:http';
import { Pool } from 'undici';
import type { Dispatcher } from 'undici';
import { listenLoopback } from './bare-proxy.js';

export function startBareDispatchProxy(upstream: string, port = 0): Promise<{ url: string; close(): Promise<void> }> {
  const pool = new Pool(upstream, { connections: 128, pipelining: 1 });
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const headers = { ...req.headers };
      delete headers.host;
      delete headers.connection;
      const handler: Dispatcher.DispatchHandler = {
        // A client gone before its answer ended cancels upstream's (else a paused answer, its
        // 'drain' never coming, would hold an upstream socket for good).
        onRequestStart: (controller) => {
          res.once('close', () => {
            if (!res.writableFinished) controller.abort(new Error('client disconnected'));
          });
        },
        onResponseStart: (controller, status, answer) => {
          res.writeHead(status, answer as http.OutgoingHttpHeaders);
          res.on('drain', () => controller.resume());
        },
        onResponseData: (controller, chunk) => {
          if (!res.write(chunk)) controller.pause();
        },
        onResponseEnd: () => void res.end(),
        onResponseError: () => {
          if (!res.headersSent) res.writeHead(502);
          res.end();
        },
      };
      pool.dispatch({ method: req.method as Dispatcher.HttpMethod, path: req.url!, headers: headers as Record<string, string>, body: chunks.length === 1 ? chunks[0] : Buffer.concat(chunks) }, handler);
    });
  });
  return listenLoopback(server, pool, port);
}
