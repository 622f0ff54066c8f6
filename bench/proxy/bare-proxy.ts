/**
 * The reference: the least a Node.js proxy can do (node:http in, undici out, bodies piped).
 * The gateway's throughput is reported as a ratio of this one's, measured in the same run.
 */
import http from 'node:http';
import { Pool } from 'undici';

export function startBareProxy(upstream: string, port = 0): Promise<{ url: string; close(): Promise<void> }> {
  const pool = new Pool(upstream, { connections: 128, pipelining: 1 });
  const server = http.createServer(async (req, res) => {
    try {
      const { statusCode, headers, body } = await pool.request({
        method: req.method as 'POST', path: req.url!, headers: { ...req.headers, host: undefined, connection: undefined }, body: req,
      });
      res.writeHead(statusCode, headers as http.OutgoingHttpHeaders);
      body.pipe(res);
    } catch {
      res.writeHead(502).end();
    }
  });
  return listenLoopback(server, pool, port);
}

/** Listens on 127.0.0.1; `close` cuts the server's connections, then closes it and the pool. */
export function listenLoopback(server: http.Server, pool: Pool, port: number): Promise<{ url: string; close(): Promise<void> }> {
  return new Promise((resolve) =>
    server.listen(port, '127.0.0.1', () =>
      resolve({
        url: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
        close: async () => { server.closeAllConnections(); await new Promise((r) => server.close(r)); await pool.close(); },
      }),
    ),
  );
}
