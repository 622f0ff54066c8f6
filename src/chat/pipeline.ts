/**
 * The one chat pipeline behind both doors (HTTP /v1/messages and the WebSocket `chat`):
 *
 *   validate → authorize → admit (limits) → call upstream (keys, retries, circuits,
 *   fallbacks) → relay (bytes as they arrive, parsed alongside) → settle (usage, limits)
 *
 * Guarantees: a refused request throws a GatewayError before any byte is sent and holds
 * nothing; an admitted request is settled exactly once (usage record, token reconciliation,
 * stream slot released), whether it completed, failed upstream, failed mid-stream or was
 * cancelled by the client (then what was streamed is recorded). Settling runs beside the
 * answer, not before it: the last byte may reach the client a moment before its usage record
 * is written (`onSummary` is called once it is).
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { FastifyBaseLogger } from 'fastify';
import type { AuthContext } from '../auth/authenticate.js';
import { modelAllowed, requireMaxTokens, requireModel } from '../auth/permissions.js';
import { toGatewayError } from '../errors/index.js';
import type { RateLimiter } from '../ratelimit/index.js';
import { rateLimitError, rateLimitHeaders } from '../ratelimit/index.js';
import type { Upstream } from '../upstream/index.js';
import { callUpstream, resilienceHeaders } from '../upstream/index.js';
import type { CancelSignal } from '../upstream/client.js';
import type { KeySource } from '../upstream/keys.js';
import type { UpstreamOutcome } from '../upstream/resilient.js';
import { emptyUsage } from '../upstream/sse.js';
import type { TokenUsage } from '../upstream/sse.js';
import type { UsageLedger } from '../vault/usage.js';
import { ChatEvents } from './events.js';
import type { ChatEvent } from './events.js';
import { estimateInputTokens, parseMessagesBody } from './request.js';
import { relayStream } from './relay.js';
import type { StreamRelay } from './relay.js';
import { Settlement } from './settle.js';
import type { ChatOutcome, SettlementEnd } from './settle.js';
import { upstreamError } from './upstream-error.js';

export type { ChatEvent } from './events.js';

export interface ChatPipelineDeps {
  upstream: Upstream;
  keys: KeySource;
  limiter: RateLimiter;
  usage: UsageLedger;
  log: FastifyBaseLogger;
  now?: () => number;
}

/** A Messages request arriving over HTTP, body untouched. */
export interface MessagesInput {
  auth: AuthContext;
  /** Path with query, e.g. `/v1/messages?beta=true`. */
  path: string;
  headers: IncomingHttpHeaders;
  body: Buffer;
  requestId: string;
  /** The client's connection: an AbortSignal, or an Aborter (cheaper; the HTTP door's). */
  signal: CancelSignal;
  transport?: 'http' | 'ws';
}

/** What the HTTP door sends back: a whole body, or a stream of SSE bytes. */
export type ProxyResult =
  | { kind: 'buffered'; status: number; headers: Record<string, string>; bytes: Buffer }
  | ({ kind: 'stream'; status: number; headers: Record<string, string> } & StreamRelay);

export interface ChatSummary {
  outcome: ChatOutcome;
  usage: { input_tokens: number; output_tokens: number; cache_creation_input_tokens: number; cache_read_input_tokens: number };
  stopReason: string | null;
  error?: { type: string; message: string };
}

export interface ChatRun {
  events: AsyncIterable<ChatEvent>;
  done: Promise<ChatSummary>;
}

export interface ChatStartOptions {
  auth: AuthContext;
  request: Record<string, unknown>;
  requestId: string;
  signal: AbortSignal;
  ip?: string;
  transport: 'http' | 'ws';
}

/** The API version used for chats that arrive without HTTP headers (WebSocket). */
const DEFAULT_ANTHROPIC_VERSION = '2023-06-01';

export class ChatPipeline {
  private readonly now: () => number;
  /** Settlements still writing after their answer ended; `drain()` waits for none to be left. */
  private settling = 0;
  private readonly drained: Array<() => void> = [];
  /** Counts one settlement finished (a method in a field: one function for every request). */
  private readonly settledOne = (): void => {
    this.settling -= 1;
    if (this.settling === 0) for (const resolve of this.drained.splice(0)) resolve();
  };
  /** A settlement that threw (settling itself never does; a caller's `onSummary` might): logged, then counted. */
  private readonly settlementFailed = (err: unknown): void => {
    this.deps.log.error({ err }, 'chat settlement failed');
    this.settledOne();
  };

  constructor(private readonly deps: ChatPipelineDeps) {
    this.now = deps.now ?? Date.now;
  }

  /** Resolves when every settlement started so far has finished (call before closing the database). */
  async drain(): Promise<void> {
    while (this.settling > 0) await new Promise<void>((resolve) => this.drained.push(resolve));
  }

  /**
   * Settles beside the answer, tracked for `drain()`, then tells `onSummary`. Only the values
   * given here are held while the usage record is written, never the request itself: a
   * closure made inside `messages()` keeps that whole scope alive (the upstream body, the
   * client's response, their buffers) until the write commits, tens of milliseconds under
   * load (a heap snapshot of the proxy bench held 83 finished-or-running answers for 50 in
   * flight that way; test/proxy/retention.test.ts). The summary is made from the settlement's
   * own values, and only for a caller that asked for it (the WebSocket door).
   */
  private settleBeside(
    settlement: Settlement,
    end: SettlementEnd,
    onSummary: ((summary: ChatSummary) => void) | undefined,
    stopReason: string | null = null,
    error?: ChatSummary['error'],
  ): void {
    const settled = settlement.settle(end);
    const work = onSummary
      ? settled.then(() => onSummary({ outcome: end.outcome, usage: wireUsage(end.usage), stopReason, ...(error ? { error } : {}) }))
      : settled;
    this.settling += 1;
    work.then(this.settledOne, this.settlementFailed);
  }

  /** POST /v1/messages, streaming or not. */
  async messages(input: MessagesInput, onSummary?: (summary: ChatSummary) => void): Promise<ProxyResult> {
    const startedAt = this.now();
    const { auth } = input;
    const body = parseMessagesBody(input.body);
    requireModel(auth.permissions, body.model);
    requireMaxTokens(auth.permissions, body.max_tokens);
    const stream = body.stream === true;

    const { limiter } = this.deps;
    const admit = {
      userId: auth.user.id,
      tier: auth.permissions.rateTier,
      override: auth.permissions.rateLimits,
      estimatedInputTokens: estimateInputTokens(input.body, body),
      maxTokens: body.max_tokens,
    };
    // Without a promise when the limiter's store is in this process (the default engine).
    const admission = limiter.admitRequestNow(admit) ?? (await limiter.admitRequest(admit));
    if (!admission.allowed) throw rateLimitError(admission);
    const reservation = admission.reservation;

    let lease;
    if (stream) {
      // Refused or failed (store down, closed policy), the tokens reserved go back.
      const giveBack = async () => {
        if (reservation) await limiter.settle(reservation, 0).catch(() => {});
      };
      const who = { userId: auth.user.id, tier: auth.permissions.rateTier, override: auth.permissions.rateLimits };
      let slot;
      try {
        slot = limiter.acquireStreamNow(who) ?? (await limiter.acquireStream(who));
      } catch (err) {
        await giveBack();
        throw err;
      }
      if (!slot.allowed) {
        await giveBack();
        throw rateLimitError(slot);
      }
      lease = slot.lease;
    }

    const settlement = new Settlement(
      { limiter: this.deps.limiter, usage: this.deps.usage, log: this.deps.log, now: this.now },
      { auth, requestId: input.requestId, model: body.model, stream, transport: input.transport ?? 'http', startedAt, reservation, lease },
    );

    let outcome: UpstreamOutcome;
    try {
      const { client, circuits, retry, fallbacks } = this.deps.upstream;
      outcome = await callUpstream({
        client,
        circuits,
        retry,
        fallbacks,
        keys: this.deps.keys,
        allowModel: (m) => modelAllowed(auth.permissions, m),
        method: 'POST',
        path: input.path,
        headers: input.headers,
        body: input.body,
        model: body.model,
        requestId: input.requestId,
        signal: input.signal,
        wholeAnswer: !stream,
      });
    } catch (err) {
      const gateway = input.signal.aborted ? undefined : toGatewayError(err);
      await settlement.settle({
        status: gateway?.status ?? 499,
        outcome: gateway ? 'error' : 'cancelled',
        usage: emptyUsage(),
        errorType: gateway?.type ?? null,
        keyId: null,
        keyName: null,
        retries: 0,
        fallback: null,
      });
      onSummary?.({ outcome: gateway ? 'error' : 'cancelled', usage: wireUsage(emptyUsage()), stopReason: null });
      throw err;
    }

    // The outcome's headers object is this request's own: the gateway's headers are added to
    // it in place (merging header objects by spreading cost about 10 µs a request).
    const headers = resilienceHeaders(outcome, outcome.headers);
    rateLimitHeaders(admission, headers);
    // What the settlement needs of the outcome, copied out of it (see settleBeside).
    const { keyId, keyName, model, retries, fallback } = outcome;
    const end = (status: number, result: ChatOutcome, usage: TokenUsage, errorType: string | null): SettlementEnd => ({
      status,
      outcome: result,
      usage,
      errorType,
      keyId,
      keyName,
      model,
      retries,
      fallback,
    });

    if (outcome.kind !== 'stream') {
      settlement.firstByte();
      const complete = outcome.kind === 'buffered';
      const usage = outcome.kind === 'buffered' && outcome.usage ? outcome.usage : emptyUsage();
      // Not awaited: the answer does not wait for the usage write (settle never throws).
      this.settleBeside(settlement, end(outcome.status, complete ? 'complete' : 'error', usage, complete ? null : errorTypeOf(outcome.bytes)), onSummary);
      return { kind: 'buffered', status: outcome.status, headers, bytes: outcome.bytes };
    }

    const streamOutcome = outcome;
    const relay = relayStream(streamOutcome.body, input.signal, {
      onChunk: () => settlement.firstByte(),
      onBroken: (err) => this.deps.log.warn({ request_id: input.requestId, key: streamOutcome.keyName, err: (err as Error).message }, 'upstream stream broke'),
      onEnd: (summary, failed) => {
        streamOutcome.release();
        const result: ChatOutcome = input.signal.aborted
          ? 'cancelled'
          : failed || summary.error || !summary.complete
            ? 'failed_midstream'
            : 'complete';
        const errorType = failed ? 'api_error' : (summary.error?.type ?? null);
        // Not awaited: the end of the stream does not wait for the usage write (settle never throws).
        const error = summary.error ?? (failed ? { type: 'api_error', message: 'upstream connection failed mid-stream' } : undefined);
        this.settleBeside(settlement, end(streamOutcome.status, result, summary.usage, errorType), onSummary, summary.stopReason, error);
      },
    });
    // Plain properties only. With a getter here (`get chunks()`), under the proxy bench every
    // streamed request outlived two young-generation collections and was promoted: 2.0 MB
    // promoted per collection instead of 0.07 (docs/benchmarks.md, session 7; likely because
    // V8 builds a literal with an accessor in its runtime rather than from a boilerplate).
    return { kind: 'stream', status: streamOutcome.status, headers, chunks: relay.chunks, pipeTo: relay.pipeTo, ready: relay.ready };
  }

  /**
   * A streaming chat for a door without HTTP (the WebSocket): the same pipeline, with the
   * events parsed. Rejects before any event when refused; an upstream client error (400…)
   * becomes a GatewayError carrying upstream's type and message. A chat aborted through
   * `signal` before its stream began does not reject: it resolves with no events and `done`
   * says `cancelled` (usage settled). Once `events` has been read to its end (or its
   * iteration stopped), `done` resolves, after the usage record is written.
   */
  async start(options: ChatStartOptions): Promise<ChatRun> {
    let resolveDone!: (summary: ChatSummary) => void;
    const done = new Promise<ChatSummary>((resolve) => (resolveDone = resolve));
    const body = Buffer.from(JSON.stringify({ ...options.request, stream: true }));
    let result: ProxyResult;
    try {
      result = await this.messages(
        {
          auth: options.auth,
          path: '/v1/messages',
          headers: { 'anthropic-version': DEFAULT_ANTHROPIC_VERSION, 'content-type': 'application/json' },
          body,
          requestId: options.requestId,
          signal: options.signal,
          transport: options.transport,
        },
        resolveDone,
      );
    } catch (err) {
      if (!options.signal.aborted) throw err;
      // Settled as cancelled by messages() when it got that far; resolving twice is a no-op.
      resolveDone({ outcome: 'cancelled', usage: wireUsage(emptyUsage()), stopReason: null });
      return { events: noEvents(), done };
    }
    if (result.kind === 'buffered') throw upstreamError(result.status, result.bytes);
    return { events: ChatEvents.parse(result.chunks()), done };
  }
}

async function* noEvents(): AsyncGenerator<ChatEvent> {}

function errorTypeOf(bytes: Buffer): string | null {
  try {
    const body = JSON.parse(bytes.toString('utf8')) as { error?: { type?: unknown } };
    return typeof body.error?.type === 'string' ? body.error.type : null;
  } catch {
    return null;
  }
}

function wireUsage(u: ReturnType<typeof emptyUsage>): ChatSummary['usage'] {
  return {
    input_tokens: u.inputTokens,
    output_tokens: u.outputTokens,
    cache_creation_input_tokens: u.cacheCreationInputTokens,
    cache_read_input_tokens: u.cacheReadInputTokens,
  };
}
