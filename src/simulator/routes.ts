/**
 * The simulator's endpoints as one Fastify plugin: auth and version checks on every request,
 * then /v1/messages (JSON and SSE), /v1/messages/count_tokens, /v1/models and /v1/models/{id}.
 * Failures are thrown as `SimulatedHttpError` and rendered by one error handler.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { SimulatedHttpError, errorBody, fromFrameworkError, statusForType } from './errors.js';
import type { FaultBook } from './faults.js';
import { JSON_TYPE, SSE_TYPE } from './headers.js';
import type { HeaderSource, IdSource } from './headers.js';
import type { ModelCatalogue } from './models.js';
import { planReply } from './reply.js';
import { countInputTokens, countTokensBodySchema, extractDirective, lastUserText, messagesBodySchema, parseBody } from './request.js';
import type { PromptBody } from './request.js';
import { writeStream } from './stream.js';
import type { SimulatedFault, SimulatedOutcome, SimulatedRequest, SimulatedUsage } from './types.js';

export interface RouteDeps {
  faults: FaultBook;
  models: ModelCatalogue;
  ids: IdSource;
  headers: HeaderSource;
  keys: Set<string> | null;
  deltas: number;
  deltaDelayMs: number;
  record: (entry: SimulatedRequest) => void;
  pause: (ms: number) => Promise<boolean>;
}

const VERSIONS = new Set(['2023-06-01', '2026-10-21']);

/** Per-request state, set by the onRequest hook. */
interface Ctx {
  requestId: string;
  key: string | null;
  version: string;
  at: number;
  model: string | null;
  stream: boolean;
  faultIds: string[];
  recorded: boolean;
}

declare module 'fastify' {
  interface FastifyRequest {
    sim: Ctx;
  }
}

function credential(request: FastifyRequest): string | null {
  const apiKey = request.headers['x-api-key'];
  if (typeof apiKey === 'string' && apiKey.length > 0) return apiKey;
  const auth = request.headers.authorization;
  if (typeof auth === 'string' && auth.length > 7 && auth.slice(0, 7).toLowerCase() === 'bearer ') return auth.slice(7).trim() || null;
  return null;
}

function pathOf(url: string): string {
  const q = url.indexOf('?');
  return q === -1 ? url : url.slice(0, q);
}

/** The error answer a status fault asks for, with its retry headers. */
function faultError(fault: SimulatedFault & { status: number }): SimulatedHttpError {
  const headers: Record<string, string> = {};
  if (fault.retryAfterMs !== undefined) headers['retry-after-ms'] = String(fault.retryAfterMs);
  if (fault.retryAfter !== undefined) headers['retry-after'] = String(fault.retryAfter);
  else if (fault.retryAfterMs !== undefined) headers['retry-after'] = String(Math.ceil(fault.retryAfterMs / 1000));
  else if (fault.status === 429) headers['retry-after'] = '1';
  if (fault.shouldRetry !== undefined) headers['x-should-retry'] = String(fault.shouldRetry);
  return new SimulatedHttpError(fault.status, fault.message, { type: fault.type, headers });
}

export async function simulatorRoutes(app: FastifyInstance, deps: RouteDeps): Promise<void> {
  const { faults, models, ids, headers } = deps;

  const record = (request: FastifyRequest, status: number, usage: SimulatedUsage | null, outcome: SimulatedOutcome) => {
    const ctx = request.sim;
    if (ctx.recorded) return;
    ctx.recorded = true;
    deps.record({
      requestId: ctx.requestId,
      method: request.method,
      path: pathOf(request.url),
      key: ctx.key,
      model: ctx.model,
      stream: ctx.stream,
      status,
      usage,
      outcome,
      faultIds: ctx.faultIds,
      at: ctx.at,
    });
  };

  app.decorateRequest('sim', null as unknown as Ctx);

  app.addHook('onRequest', async (request) => {
    const key = credential(request);
    const version = request.headers['anthropic-version'];
    request.sim = { requestId: ids.next('req'), key, version: typeof version === 'string' ? version : '', at: Date.now(), model: null, stream: false, faultIds: [], recorded: false };
    if (key === null) throw new SimulatedHttpError(401, 'x-api-key header is required');
    if (deps.keys !== null && !deps.keys.has(key)) throw new SimulatedHttpError(401, 'invalid x-api-key');
    if (typeof version !== 'string' || version.length === 0) throw new SimulatedHttpError(400, 'anthropic-version: header is required');
    if (!VERSIONS.has(version)) throw new SimulatedHttpError(400, `anthropic-version: ${JSON.stringify(version)} is not a valid version`);
  });

  app.setErrorHandler((err, request, reply) => {
    const e = fromFrameworkError(err);
    const id = request.sim?.requestId ?? ids.next('req');
    if (request.sim) record(request, e.status, null, 'error');
    return reply
      .code(e.status)
      .headers({ ...headers.common(id, JSON_TYPE, e.status === 429), ...e.headers })
      .send(errorBody(e.type, e.message, id));
  });

  app.setNotFoundHandler(async (request) => {
    throw new SimulatedHttpError(404, `${request.method} ${pathOf(request.url)} not found`);
  });

  /** Resolves faults, waits `latencyMs`, throws a status fault. */
  const applyFaults = async (request: FastifyRequest, directive?: string): Promise<SimulatedFault> => {
    const header = request.headers['x-sim-fault'];
    const resolved = faults.resolve(request.sim.key, typeof header === 'string' ? header : undefined, directive);
    request.sim.faultIds = resolved.ids;
    const fault = resolved.fault;
    if (fault.latencyMs) await deps.pause(fault.latencyMs);
    if (fault.status !== undefined) throw faultError(fault as SimulatedFault & { status: number });
    return fault;
  };

  const prompt = (body: PromptBody) => {
    const text = lastUserText(body);
    const directive = extractDirective(text);
    return directive ? { text: directive.rest, directive: directive.json } : { text, directive: undefined };
  };

  const requireModel = (model: string) => {
    if (!models.find(model)) throw new SimulatedHttpError(404, `model: ${model}`);
  };

  app.post('/v1/messages', async (request: FastifyRequest, reply: FastifyReply) => {
    const ctx = request.sim;
    const body = parseBody(messagesBodySchema, request.body, ctx.version);
    ctx.model = body.model;
    ctx.stream = body.stream === true;
    const { text, directive } = prompt(body);
    const fault = await applyFaults(request, directive);
    requireModel(body.model);

    const plan = planReply({ body, prompt: text, fault, deltas: deps.deltas, toolUseId: ids.next('toolu') });
    const usage: SimulatedUsage = {
      input_tokens: countInputTokens(body),
      cache_creation_input_tokens: fault.cacheCreationTokens ?? 0,
      cache_read_input_tokens: fault.cacheReadTokens ?? 0,
      output_tokens: plan.outputTokens,
    };
    const messageId = ids.next('msg');
    const delay = fault.deltaDelayMs ?? deps.deltaDelayMs;

    if (ctx.stream) {
      reply.hijack();
      const result = await writeStream({
        res: reply.raw,
        headers: { ...headers.common(ctx.requestId, SSE_TYPE), 'cache-control': 'no-cache' },
        messageId,
        model: body.model,
        plan,
        usage,
        fault,
        deltaDelayMs: delay,
        pause: deps.pause,
      });
      record(request, 200, result.usage, result.outcome);
      return;
    }

    if (delay > 0) {
      const total = plan.blocks.reduce((n, b) => n + b.deltas.length, 0);
      if (!(await deps.pause(delay * total)) || request.raw.socket.destroyed) {
        record(request, 200, null, 'aborted');
        reply.hijack();
        reply.raw.destroy();
        return;
      }
    }
    if (fault.resetAfterDeltas !== undefined) {
      record(request, 200, null, 'reset');
      reply.hijack();
      request.raw.socket.destroy();
      return;
    }
    if (fault.errorAfterDeltas !== undefined) {
      const type = fault.errorType ?? 'overloaded_error';
      throw new SimulatedHttpError(statusForType(type), fault.message, { type });
    }
    const answer = JSON.stringify({
      id: messageId,
      type: 'message',
      role: 'assistant',
      model: body.model,
      content: plan.blocks.map((b) => b.final),
      stop_reason: plan.stopReason,
      stop_sequence: plan.stopSequence,
      usage,
    });
    if (fault.malformedAfterDeltas !== undefined) {
      record(request, 200, null, 'malformed');
      reply.hijack();
      reply.raw.writeHead(200, headers.common(ctx.requestId, JSON_TYPE));
      reply.raw.end(answer.slice(0, Math.floor(answer.length / 2)));
      return;
    }
    record(request, 200, usage, 'complete');
    return reply.headers(headers.common(ctx.requestId, JSON_TYPE)).send(answer);
  });

  app.post('/v1/messages/count_tokens', async (request, reply) => {
    const body = parseBody(countTokensBodySchema, request.body, request.sim.version);
    request.sim.model = body.model;
    await applyFaults(request, prompt(body).directive);
    requireModel(body.model);
    record(request, 200, null, 'complete');
    return reply.headers(headers.common(request.sim.requestId, JSON_TYPE)).send(`{"input_tokens":${countInputTokens(body)}}`);
  });

  app.get('/v1/models', async (request, reply) => {
    await applyFaults(request);
    const page = models.page(request.query as Record<string, string>);
    record(request, 200, null, 'complete');
    return reply.headers(headers.common(request.sim.requestId, JSON_TYPE)).send(JSON.stringify(page));
  });

  app.get('/v1/models/:id', async (request, reply) => {
    await applyFaults(request);
    const { id } = request.params as { id: string };
    const model = models.find(id);
    if (!model) throw new SimulatedHttpError(404, `model: ${id}`);
    record(request, 200, null, 'complete');
    return reply.headers(headers.common(request.sim.requestId, JSON_TYPE)).send(JSON.stringify(model));
  });
}
