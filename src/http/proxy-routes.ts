/**
 * The Anthropic-compatible HTTP API: POST /v1/messages (JSON or SSE), POST
 * /v1/messages/count_tokens, GET /v1/models and /v1/models/:id (with ?beta=true). The
 * official SDKs and Claude Code point their base URL here and authenticate with a personal
 * token (x-api-key or Bearer) or an access token. Errors keep Anthropic's shape.
 */
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import type { AuthContext } from '../auth/authenticate.js';
import { modelAllowed, requireModel } from '../auth/permissions.js';
import type { ChatPipeline, ProxyResult } from '../chat/pipeline.js';
import { parseCountTokensBody } from '../chat/request.js';
import type { RateLimiter } from '../ratelimit/index.js';
import { rateLimitError, rateLimitHeaders } from '../ratelimit/index.js';
import type { Upstream } from '../upstream/index.js';
import { ANY_MODEL, callUpstream, resilienceHeaders } from '../upstream/index.js';
import { Aborter } from '../upstream/client.js';
import type { KeySource } from '../upstream/keys.js';

export interface ProxyRoutesOptions {
  chat: ChatPipeline;
  upstream: Upstream;
  keys: KeySource;
  limiter: RateLimiter;
  /** Added to every answer (e.g. `x-portcullis-demo: true`). */
  extraHeaders: Record<string, string>;
}

/** A signal that aborts when the client goes away before its answer is finished. */
function abortOnClose(request: FastifyRequest, reply: FastifyReply): Aborter {
  const aborter = new Aborter();
  reply.raw.once('close', () => {
    if (!reply.raw.writableFinished) aborter.abort(new Error('client disconnected'));
  });
  request.raw.once('aborted', () => aborter.abort(new Error('client disconnected')));
  return aborter;
}

/** Adds `extra` to `headers` in place (no merged copy: this runs for every answer). */
function withExtra(headers: Record<string, string>, extra: Record<string, string>): Record<string, string> {
  for (const name in extra) headers[name] = extra[name]!;
  return headers;
}

/**
 * The answer to POST /v1/messages, written straight to the socket (the answer's headers are
 * final; Fastify's reply hooks have nothing to add on this route): a whole body, or SSE bytes
 * without buffering (the pipeline stops when the client goes away; the promise returned
 * resolves then). Not an async function: a whole body needs no promise.
 */
function sendMessagesResult(reply: FastifyReply, result: ProxyResult, extra: Record<string, string>): Promise<void> | undefined {
  const res = reply.raw;
  reply.hijack();
  const headers = withExtra(result.headers, extra);
  headers['x-request-id'] = reply.request.id;
  if (result.kind === 'buffered') {
    headers['content-length'] = String(result.bytes.length);
    res.writeHead(result.status, headers);
    res.end(result.bytes);
    return undefined;
  }
  headers['cache-control'] = 'no-cache';
  res.writeHead(result.status, headers);
  // The headers leave with the first event when one is already here (one write instead of
  // two); otherwise now, so the client sees its 200 before upstream's first event.
  if (!result.ready()) res.flushHeaders();
  return result.pipeTo(res);
}

export const proxyRoutes: FastifyPluginAsync<ProxyRoutesOptions> = async (app, options) => {
  const { chat, upstream, keys, limiter, extraHeaders } = options;

  // Bodies are kept as bytes: forwarded unmodified, parsed once for the checks.
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));

  const auth = (request: FastifyRequest): AuthContext => request.auth!;

  // A handler returning a promise (Fastify waits for it) without being an async function
  // itself: one promise less per request.
  app.post('/v1/messages', { preHandler: app.requireAuth }, (request, reply) =>
    chat
      .messages({
        auth: auth(request),
        path: request.url,
        headers: request.headers,
        body: (request.body as Buffer | undefined) ?? Buffer.alloc(0),
        requestId: request.id,
        signal: abortOnClose(request, reply),
      })
      .then((result) => sendMessagesResult(reply, result, extraHeaders)),
  );

  app.post('/v1/messages/count_tokens', { preHandler: app.requireAuth }, async (request, reply) => {
    const user = auth(request);
    const raw = (request.body as Buffer | undefined) ?? Buffer.alloc(0);
    const body = parseCountTokensBody(raw);
    requireModel(user.permissions, body.model);
    const admission = await limiter.admitRequest({
      userId: user.user.id,
      tier: user.permissions.rateTier,
      override: user.permissions.rateLimits,
      estimatedInputTokens: 0,
      maxTokens: 0,
    });
    if (!admission.allowed) throw rateLimitError(admission);
    const outcome = await callUpstream({
      ...upstream,
      keys,
      allowModel: (m) => modelAllowed(user.permissions, m),
      method: 'POST',
      path: request.url,
      headers: request.headers,
      body: raw,
      model: body.model,
      requestId: request.id,
      signal: abortOnClose(request, reply),
    });
    outcome.release();
    const bytes = outcome.kind === 'stream' ? Buffer.alloc(0) : outcome.bytes;
    return reply
      .code(outcome.status)
      .headers(withExtra(rateLimitHeaders(admission, resilienceHeaders(outcome, outcome.headers)), extraHeaders))
      .send(bytes);
  });

  /** Upstream pages of the model list read at most for one answer whose pages hold no model this user may call. */
  const MAX_MODEL_PAGES = 10;
  /** The model list, filtered to the models this user may call. */
  const models = async (request: FastifyRequest, reply: FastifyReply) => {
    const user = auth(request);
    const signal = abortOnClose(request, reply);
    const url = new URL(request.url, 'http://gateway');
    const backwards = url.searchParams.has('before_id');
    for (let page = 1; ; page++) {
      const outcome = await callUpstream({ ...upstream, keys, method: 'GET', path: url.pathname + url.search, headers: request.headers, model: ANY_MODEL, requestId: request.id, signal });
      outcome.release();
      reply.code(outcome.status).headers(withExtra(outcome.headers, extraHeaders));
      if (outcome.kind !== 'buffered') return reply.send(outcome.kind === 'passthrough' ? outcome.bytes : Buffer.alloc(0));
      const json = outcome.json as { data?: Array<{ id?: unknown }>; id?: unknown; has_more?: unknown; first_id?: unknown; last_id?: unknown };
      if (!Array.isArray(json.data)) {
        // GET /v1/models/:id: the model, unless this user may not call it.
        if (typeof json.id === 'string') requireModel(user.permissions, json.id);
        return reply.send(json);
      }
      json.data = json.data.filter((m) => typeof m.id === 'string' && modelAllowed(user.permissions, m.id));
      // A page left empty would end an SDK's paging (it stops at an empty page, has_more or
      // not): the next upstream page is fetched instead, a few at the most.
      const cursor = backwards ? json.first_id : json.last_id;
      if (json.data.length > 0 || json.has_more !== true || typeof cursor !== 'string' || page >= MAX_MODEL_PAGES) return reply.send(json);
      url.searchParams.set(backwards ? 'before_id' : 'after_id', cursor);
    }
  };
  app.get('/v1/models', { preHandler: app.requireAuth }, models);
  app.get('/v1/models/:id', { preHandler: app.requireAuth }, models);
};
