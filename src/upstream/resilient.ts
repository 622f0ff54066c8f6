/**
 * `callUpstream`: one client request to Anthropic, made resilient.
 *
 * For the requested model, then for each fallback model (FALLBACK_MODELS) in turn:
 *   a round = one attempt per healthy key not yet tried in this round, next key at once
 *   (different keys have separate limits, so no wait between them); when the round has no
 *   key left and retries remain (UPSTREAM_MAX_RETRIES), wait (upstream's retry-after-ms /
 *   retry-after of the last failure, else full-jitter backoff) and start another round.
 * Everything is bounded by the first-byte deadline (UPSTREAM_DEADLINE_MS): no wait is started
 * that would end past it, and an attempt in flight at the deadline is cancelled. Except for
 * an answer that comes whole (`wholeAnswer`: a non-streaming message, whose first byte comes
 * once the reply is written): an attempt started before the deadline may wait for it
 * `retry.wholeAnswerMs` (UPSTREAM_TIMEOUT_MS).
 *
 * Verdicts (attempt.ts): success commits; a client error (400, 404, 413, …) is returned
 * unmodified as a `passthrough` outcome; 401/402/403 mean OUR key is bad: the key is excluded
 * (401 also opens its circuit, 402 counts as a failure, 403 leaves its health alone: it may
 * concern this request's model only), the next key is tried, and the client never sees Anthropic's
 * auth error (it would read as "your credential is wrong"): when no key is left it gets a
 * gateway `unavailable` error instead. Retryable failures feed the key's circuit (circuit.ts),
 * and so does a committed stream that breaks on upstream's side (not when our client left).
 *
 * Errors thrown (all `GatewayError`, rendered by the app's error handler):
 * - no key configured: `unavailable`, reason `no_upstream_key`;
 * - every key open/cooling, or retries exhausted: `overloaded` (529 overloaded_error) with
 *   `retryAfterSeconds`, reason `all_keys_unhealthy` / `upstream_exhausted`;
 * - every tried key rejected by upstream: `unavailable`, reason `upstream_key_rejected`;
 * - deadline passed: `upstream_timeout` (504), reason `upstream_deadline`.
 * When the client's signal aborts, the upstream request is cancelled and the call rejects with
 * `signal.reason`.
 *
 * Lease ownership: every attempt's lease is released by this module, except the committed
 * streaming attempt's, which is released when its body stream closes (ended, failed or
 * destroyed). A caller that drops a stream outcome without reading it must call
 * `outcome.release()` (which destroys the body); `release()` is idempotent and harmless on
 * buffered outcomes.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { GatewayError } from '../errors/index.js';
import { runAttempt, DeadlineExceeded } from './attempt.js';
import type { AttemptVerdict } from './attempt.js';
import type { CircuitBreakers } from './circuit.js';
import type { CancelSignal, UpstreamBody, UpstreamClient } from './client.js';
import type { FallbackChain } from './fallback.js';
import { withModel } from './fallback.js';
import { responseHeadersForClient, upstreamRequestHeaders } from './headers.js';
import type { KeyLease, KeySource } from './keys.js';
import { parseRetryAfter } from './retry.js';
import type { RetryPolicy } from './retry.js';
import { usageFromMessage } from './sse.js';
import type { TokenUsage } from './sse.js';

/** The model asked of `KeySource.pick` for requests that name none (e.g. GET /v1/models): any key will do. */
export const ANY_MODEL = '';

/** Longest wait for a key to come back when every key is open or cooling (longer: answer overloaded at once). */
const MAX_IDLE_WAIT_MS = 5000;

/** One attempt, for logs, usage records and the x-portcullis-retries header. */
export interface AttemptRecord {
  keyId: string;
  keyName: string;
  model: string;
  /** Upstream's HTTP status, or null when none arrived. */
  status: number | null;
  /** Why it failed (`status_529`, `econnrefused`, `malformed_body`, `deadline`…), null on success/passthrough. */
  error: string | null;
  ms: number;
}

export interface CallUpstreamOptions {
  client: UpstreamClient;
  keys: KeySource;
  circuits: CircuitBreakers;
  retry: RetryPolicy;
  /** Fallback models; none when absent. */
  fallbacks?: FallbackChain;
  /** May the caller use this fallback model? (permissions); every model when absent. */
  allowModel?: (model: string) => boolean;
  method: string;
  /** Path with query, e.g. `/v1/messages?beta=true`. */
  path: string;
  /** The client's headers as received; filtered by the policy in headers.ts. */
  headers: IncomingHttpHeaders;
  body?: Buffer;
  /** The body's `model`, when it has one (enables key choice per model and fallbacks). */
  model?: string;
  /** Our id for this request, sent as x-request-id. */
  requestId: string;
  /** The client's connection: aborting cancels everything. */
  signal?: CancelSignal;
  /** The answer comes whole, not as a stream (a non-streaming message): see the module comment. */
  wholeAnswer?: boolean;
  /** Called after every attempt (logging). Must not throw. */
  onAttempt?: (attempt: AttemptRecord) => void;
}

interface OutcomeBase {
  status: number;
  /** Upstream headers a client may see (headers.ts policy). */
  headers: Record<string, string>;
  upstreamHeaders: IncomingHttpHeaders;
  /** The model that answered (the fallback when one was used). */
  model: string;
  /** The fallback model used, or null. */
  fallback: string | null;
  attempts: AttemptRecord[];
  /** attempts.length - 1 */
  retries: number;
  keyId: string;
  keyName: string;
  /** Releases the lease (and destroys an unread stream). Idempotent. */
  release(): void;
}

/** A committed answer: a 2xx event stream, a 2xx buffered body, or a client error passed through. */
export type UpstreamOutcome =
  | (OutcomeBase & { kind: 'stream'; body: UpstreamBody })
  | (OutcomeBase & { kind: 'buffered'; bytes: Buffer; json: unknown; usage: TokenUsage | null })
  | (OutcomeBase & { kind: 'passthrough'; bytes: Buffer });

/** The gateway's own headers describing how the answer was obtained, added to `into` (returned). */
export function resilienceHeaders(outcome: Pick<UpstreamOutcome, 'retries' | 'fallback'>, into: Record<string, string> = {}): Record<string, string> {
  into['x-portcullis-retries'] = String(outcome.retries);
  if (outcome.fallback !== null) into['x-portcullis-fallback'] = outcome.fallback;
  return into;
}

interface Failures {
  retryable: number;
  /** Of the retryable failures, the 429s (the key's rate limit spent). */
  rateLimited: number;
  rejected: number;
  hintMs: number | undefined;
  /** The keys that failed (made at the first failure: most calls have none). */
  keyIds: Set<string> | undefined;
}

/** No key excluded: the set most calls pick with. */
const NO_KEYS: ReadonlySet<string> = new Set();

/** Calls upstream with retries, circuits and fallbacks; see the module comment for every rule. */
export async function callUpstream(options: CallUpstreamOptions): Promise<UpstreamOutcome> {
  const { keys, circuits, retry, signal } = options;
  const clock = retry.clock;
  const started = clock.now();
  const deadline = started + retry.deadlineMs;
  signal?.throwIfAborted();
  if (keys.count() === 0) {
    throw new GatewayError('unavailable', 'No upstream API key is configured; an operator must add one (portcullis keys add).', { reason: 'no_upstream_key' });
  }
  const attempts: AttemptRecord[] = [];
  const failures: Failures = { retryable: 0, rateLimited: 0, rejected: 0, hintMs: undefined, keyIds: undefined };
  const isHealthy = (id: string) => circuits.isHealthy(id);
  const requested = options.model;
  const models: (string | undefined)[] = [requested];
  if (requested !== undefined && options.body !== undefined && options.fallbacks) {
    for (const m of options.fallbacks.after(requested)) if (!options.allowModel || options.allowModel(m)) models.push(m);
  }

  for (const model of models) {
    const body = model === requested ? options.body : withModel(options.body!, model!);
    if (model !== requested && body === undefined) break;
    /** This round's keys already tried (made at the first failure). */
    let excluded: Set<string> | undefined;
    let retriesLeft = retry.maxRetries;
    let round = 0;
    for (;;) {
      signal?.throwIfAborted();
      // A whole answer's attempt may have run past the deadline: no other starts after it.
      if (attempts.length > 0 && clock.now() >= deadline) throw exhausted(options, failures);
      const lease = keys.pick(model ?? ANY_MODEL, excluded ?? NO_KEYS, isHealthy);
      if (!lease) {
        if (retriesLeft === 0) break;
        const wait = excluded ? retry.delayFor(round, failures.hintMs) : (circuits.msUntilAvailable() ?? Infinity);
        // With nothing tried in this round (all keys open or cooling) only short cooling is worth waiting for.
        if (!excluded && !(wait <= MAX_IDLE_WAIT_MS)) break;
        if (clock.now() + wait >= deadline) break;
        retriesLeft -= 1;
        round += 1;
        await clock.sleep(wait, signal);
        excluded = undefined;
        failures.hintMs = undefined;
        continue;
      }
      const verdict = await attemptWith(options, lease, model, body, deadline, attempts);
      if (verdict.kind === 'stream' || verdict.kind === 'buffered' || verdict.kind === 'passthrough') {
        return outcomeOf(verdict, lease, { model: model ?? ANY_MODEL, fallback: model === requested ? null : (model ?? null), attempts, options });
      }
      (excluded ??= new Set()).add(lease.keyId);
      (failures.keyIds ??= new Set()).add(lease.keyId);
      if (verdict.kind === 'key_rejected') failures.rejected += 1;
      else {
        failures.retryable += 1;
        if (verdict.rateLimited) failures.rateLimited += 1;
        const hint = verdict.hintHeaders ? parseRetryAfter(verdict.hintHeaders, clock.now()) : undefined;
        if (hint !== undefined) failures.hintMs = failures.hintMs === undefined ? hint : Math.min(failures.hintMs, hint);
      }
    }
  }
  throw exhausted(options, failures);
}

/**
 * One attempt with one lease: sends, records, feeds the circuit, releases unless committed as a
 * stream. (A `then` on the attempt, not an async function: one promise per attempt instead of two.)
 */
function attemptWith(
  options: CallUpstreamOptions,
  lease: KeyLease,
  model: string | undefined,
  body: Buffer | undefined,
  deadline: number,
  attempts: AttemptRecord[],
): Promise<AttemptVerdict> {
  const { circuits, retry } = options;
  const t0 = retry.clock.now();
  const beforeDeadline = deadline - t0;
  const limitMs = options.wholeAnswer ? retry.wholeAnswerMs : retry.deadlineMs;
  const record = (status: number | null, error: string | null) => {
    const entry: AttemptRecord = { keyId: lease.keyId, keyName: lease.name, model: model ?? ANY_MODEL, status, error, ms: Math.max(0, retry.clock.now() - t0) };
    attempts.push(entry);
    options.onAttempt?.(entry);
  };
  circuits.attemptStarted(lease.keyId);
  let attempt: Promise<AttemptVerdict>;
  try {
    attempt = runAttempt({
      client: options.client,
      method: options.method,
      path: options.path,
      headers: upstreamRequestHeaders(options.headers, { apiKey: lease.secret, requestId: options.requestId }),
      body,
      signal: options.signal,
      remainingMs: options.wholeAnswer && beforeDeadline > 0 ? limitMs : beforeDeadline,
    });
  } catch (err) {
    attempt = Promise.reject(err); // released and recorded below, as any failure
  }
  return attempt.then(
    (verdict) => {
      switch (verdict.kind) {
        case 'stream':
          circuits.recordSuccess(lease.keyId);
          record(verdict.status, null);
          return verdict;
        case 'buffered':
          circuits.recordSuccess(lease.keyId);
          break;
        case 'passthrough':
          // The key answered properly; the request was at fault.
          circuits.recordSuccess(lease.keyId);
          break;
        case 'key_rejected':
          if (verdict.status === 401) circuits.trip(lease.keyId, verdict.reason);
          // A 403 may concern this request alone (a model the key's workspace may not use):
          // the next key is tried, but one user's requests must not take the key from everyone.
          else if (verdict.status === 403) circuits.recordAbandoned(lease.keyId);
          else circuits.recordFailure(lease.keyId, verdict.reason);
          break;
        case 'retry':
          if (verdict.rateLimited) circuits.recordRateLimited(lease.keyId, verdict.hintHeaders ? parseRetryAfter(verdict.hintHeaders, retry.clock.now()) : undefined);
          else circuits.recordFailure(lease.keyId, verdict.reason);
          break;
      }
      lease.release();
      record(verdict.status, verdict.kind === 'retry' || verdict.kind === 'key_rejected' ? verdict.reason : null);
      return verdict;
    },
    (err: unknown) => {
      lease.release();
      if (err instanceof DeadlineExceeded) {
        circuits.recordFailure(lease.keyId, 'deadline');
        record(null, 'deadline');
        throw new GatewayError('upstream_timeout', `Anthropic did not answer within ${limitMs % 1000 === 0 ? `${limitMs / 1000} s` : `${limitMs} ms`}.`, { reason: 'upstream_deadline' });
      }
      circuits.recordAbandoned(lease.keyId);
      record(null, 'aborted');
      throw err;
    },
  );
}

function outcomeOf(
  verdict: Extract<AttemptVerdict, { kind: 'stream' | 'buffered' | 'passthrough' }>,
  lease: KeyLease,
  meta: { model: string; fallback: string | null; attempts: AttemptRecord[]; options: CallUpstreamOptions },
): UpstreamOutcome {
  // One literal, then the kind's own fields added to it: this runs for every request, and
  // spreading a shared base into a new object cost several microseconds each time.
  const base: OutcomeBase = {
    status: verdict.status,
    headers: responseHeadersForClient(verdict.headers),
    upstreamHeaders: verdict.headers,
    model: meta.model,
    fallback: meta.fallback,
    attempts: meta.attempts,
    retries: meta.attempts.length - 1,
    keyId: lease.keyId,
    keyName: lease.name,
    release: noop,
  };
  if (verdict.kind === 'stream') {
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      verdict.detach();
      lease.release();
    };
    verdict.body.on('close', release);
    // A stream that breaks on upstream's side (not because our client left) counts against the key.
    verdict.body.on('error', (err: unknown) => {
      if (meta.options.signal?.aborted) return;
      const code = (err as { code?: unknown }).code;
      meta.options.circuits.recordFailure(lease.keyId, `midstream_${typeof code === 'string' ? code.toLowerCase() : 'error'}`);
    });
    base.release = () => {
      if (!verdict.body.destroyed) verdict.body.destroy();
      release();
    };
    return Object.assign(base, { kind: 'stream' as const, body: verdict.body });
  }
  if (verdict.kind === 'buffered') {
    const usage = verdict.json === undefined ? null : usageFromMessage(verdict.json);
    return Object.assign(base, { kind: 'buffered' as const, bytes: verdict.bytes, json: verdict.json, usage });
  }
  return Object.assign(base, { kind: 'passthrough' as const, bytes: verdict.bytes });
}

const noop = (): void => undefined;

function exhausted(options: CallUpstreamOptions, failures: Failures): GatewayError {
  const { circuits } = options;
  const waitMs = failures.hintMs ?? circuits.msUntilAvailable(failures.keyIds) ?? 0;
  const retryAfterSeconds = Math.max(1, Math.ceil(waitMs / 1000));
  if (failures.retryable === 0 && failures.rejected > 0) {
    // Not worth a client's retry (the SDKs retry any 5xx unless told not to): an operator must act.
    return new GatewayError('unavailable', "Anthropic rejected the gateway's upstream API keys; an operator must check them.", {
      reason: 'upstream_key_rejected',
      headers: { 'x-should-retry': 'false' },
    });
  }
  if (failures.rateLimited > 0 && failures.rateLimited === failures.retryable) {
    // Every key tried had its rate limit spent: the client is told so (RateLimitError in the SDKs), with when to come back.
    return new GatewayError('rate_limited', `The gateway's upstream API keys are rate limited by Anthropic; retry in ${retryAfterSeconds} s.`, {
      reason: 'upstream_rate_limited',
      retryAfterSeconds,
    });
  }
  if (failures.retryable === 0) {
    return new GatewayError('overloaded', 'Every upstream API key is temporarily unavailable; retry later.', { reason: 'all_keys_unhealthy', retryAfterSeconds });
  }
  return new GatewayError('overloaded', 'Anthropic is overloaded or unreachable right now; retry later.', { reason: 'upstream_exhausted', retryAfterSeconds });
}
