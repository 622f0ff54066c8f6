/**
 * A yardstick, not a product: the gateway's own components (authentication by personal
 * token, the rate limiter with its stream slots, the vault's key, the usage ledger and its
 * writer thread, the settled-request log line, the SSE tap) called from one plain node:http
 * handler, without Fastify and without the chat pipeline's layers (validation, retries,
 * circuits, fallbacks, client-abort handling, settlement). Measured beside the bare proxy and
 * the gateway (`BENCH_COMPONENTS=1 npx tsx bench/proxy/run.ts`), it tells how much of the
 * gateway's cost is the components themselves and how much is the way they are wired.
 * Happy path only: any failure answers 500.
 */
import http from 'node:http';
import type { FastifyInstance } from 'fastify';
import { Pool } from 'undici';
import { shipped } from '../shipped.js';

/** Serves `app`'s components on a port of its own, in front of `upstream` (the simulator). */
export async function startComponents(upstream: string, app: FastifyInstance): Promise<{ url: string; close(): Promise<void> }> {
  const { upstreamRequestHeaders, responseHeadersForClient, SseTap, usageFromMessage, rateLimitHeaders } = await shipped();
  const { authenticate, limiter, vault, usage } = app.services;
  const log = app.log.child({}, { redact: { paths: [] } });
  const pool = new Pool(upstream, { connections: 128 });
  let served = 0;

  async function handle(req: http.IncomingMessage, res: http.ServerResponse, raw: Buffer): Promise<void> {
    const startedAt = Date.now();
    const requestId = `req_components_${(++served).toString(16)}`;
    const auth = await authenticate({ apiKey: req.headers['x-api-key'] as string | undefined, authorization: req.headers.authorization });
    const body = JSON.parse(raw.toString('utf8')) as { model: string; max_tokens: number; stream?: boolean };
    const stream = body.stream === true;
    const who = { userId: auth.user.id, tier: auth.permissions.rateTier, override: auth.permissions.rateLimits };
    const admission = await limiter.admitRequest({ ...who, estimatedInputTokens: Math.ceil(raw.length / 4), maxTokens: body.max_tokens });
    const lease = stream ? (await limiter.acquireStream(who)).lease : undefined;
    const key = vault.pick(body.model, new Set(), () => true)!;
    const up = await pool.request({ method: 'POST', path: req.url!, headers: upstreamRequestHeaders(req.headers, { apiKey: key.secret, requestId }), body: raw });
    const headers = rateLimitHeaders(admission, responseHeadersForClient(up.headers));
    headers['x-request-id'] = requestId;
    const settle = (status: number, tokens: { inputTokens: number; outputTokens: number }) => {
      key.release();
      usage.record({
        requestId, userId: auth.user.id, sessionId: null, personalTokenId: auth.personalTokenId, keyId: key.keyId, model: body.model, stream,
        inputTokens: tokens.inputTokens, outputTokens: tokens.outputTokens, cacheCreationInputTokens: 0, cacheReadInputTokens: 0,
        status, outcome: 'complete', errorType: null, latencyMs: Date.now() - startedAt, ttfbMs: null, retries: 0, fallback: null, createdAt: startedAt,
      }).catch(() => {});
      if (admission.reservation) limiter.settle(admission.reservation, tokens.inputTokens + tokens.outputTokens).catch(() => {});
      if (lease) limiter.releaseStream(lease).catch(() => {});
      log.info({ request_id: requestId, user: auth.user.subject, key: key.name, model: body.model, stream, status, input_tokens: tokens.inputTokens, output_tokens: tokens.outputTokens, latency_ms: Date.now() - startedAt }, 'chat request settled');
    };
    if (!stream) {
      const bytes = Buffer.from(await up.body.arrayBuffer());
      const tokens = usageFromMessage(JSON.parse(bytes.toString('utf8')));
      headers['content-length'] = String(bytes.length);
      res.writeHead(up.statusCode, headers);
      res.end(bytes);
      settle(up.statusCode, tokens);
      return;
    }
    const tap = new SseTap();
    res.writeHead(up.statusCode, headers);
    up.body.on('data', (chunk: Buffer) => {
      tap.push(chunk);
      res.write(chunk);
    });
    up.body.on('end', () => {
      res.end();
      settle(up.statusCode, tap.summary().usage);
    });
  }

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => void handle(req, res, Buffer.concat(chunks)).catch(() => res.writeHead(500).end()));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
    close: async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
      await pool.close();
    },
  };
}
