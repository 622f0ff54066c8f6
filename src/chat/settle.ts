/**
 * The end of every chat request, whatever happened: one durable usage record, the rate
 * limiter reconciled with the real token count, the stream slot released, and one log line.
 * Settling never throws: a failure to record is logged, not passed to the client.
 */
import type { FastifyBaseLogger } from 'fastify';
import type { AuthContext } from '../auth/authenticate.js';
import type { RateLimiter } from '../ratelimit/index.js';
import type { StreamLease, TokenReservation } from '../ratelimit/limiter.js';
import type { TokenUsage } from '../upstream/sse.js';
import { flatLine } from '../http/log-line.js';
import type { UsageLedger, UsageRecord } from '../vault/usage.js';

export type ChatOutcome = UsageRecord['outcome'];

export interface SettlementDeps {
  limiter: RateLimiter;
  usage: UsageLedger;
  log: FastifyBaseLogger;
  now: () => number;
}

export interface SettlementStart {
  auth: AuthContext;
  requestId: string;
  model: string;
  stream: boolean;
  transport: 'http' | 'ws';
  startedAt: number;
  reservation: TokenReservation | undefined;
  lease: StreamLease | undefined;
}

export interface SettlementEnd {
  status: number;
  outcome: ChatOutcome;
  usage: TokenUsage;
  errorType: string | null;
  keyId: string | null;
  keyName: string | null;
  model?: string;
  retries: number;
  fallback: string | null;
}

export class Settlement {
  private ttfbAt: number | null = null;
  private settled: Promise<void> | undefined;
  /** Keeps the stream slot alive while a long reply runs (a lease expires after its TTL). */
  private readonly renewal: NodeJS.Timeout | undefined;

  constructor(
    private readonly deps: SettlementDeps,
    readonly start: SettlementStart,
  ) {
    const lease = start.lease;
    if (lease) {
      this.renewal = setInterval(() => void deps.limiter.renewStream(lease).catch(() => {}), Math.max(100, lease.ttlMs / 3));
      this.renewal.unref();
    }
  }

  /** Marks the moment the first byte went to the client. */
  firstByte(): void {
    this.ttfbAt ??= this.deps.now();
  }

  /** Settles once; later calls return the first settlement. */
  settle(end: SettlementEnd): Promise<void> {
    this.settled ??= this.run(end);
    return this.settled;
  }

  private run(end: SettlementEnd): Promise<void> {
    clearInterval(this.renewal);
    const { auth, reservation, lease } = this.start;
    const now = this.deps.now();
    const u = end.usage;
    const total = u.inputTokens + u.outputTokens + u.cacheCreationInputTokens + u.cacheReadInputTokens;
    const record: UsageRecord = {
      requestId: this.start.requestId,
      userId: auth.user.id,
      sessionId: auth.sessionId,
      personalTokenId: auth.personalTokenId,
      keyId: end.keyId,
      model: end.model ?? this.start.model,
      stream: this.start.stream,
      inputTokens: u.inputTokens,
      outputTokens: u.outputTokens,
      cacheCreationInputTokens: u.cacheCreationInputTokens,
      cacheReadInputTokens: u.cacheReadInputTokens,
      status: end.status,
      outcome: end.outcome,
      errorType: end.errorType,
      // Never negative, should the wall clock step back mid-request (the record would be refused).
      latencyMs: Math.max(0, now - this.start.startedAt),
      ttfbMs: this.ttfbAt === null ? null : Math.max(0, this.ttfbAt - this.start.startedAt),
      retries: end.retries,
      fallback: end.fallback,
      createdAt: this.start.startedAt,
    };
    const { log } = this.deps;
    const { requestId } = record;
    // Made now, written once the usage record is (lines then reach the log together, one
    // write per batch). The fields are never secret (no credential, no prompt).
    const writeLine = flatLine(log, 'info', {
      request_id: requestId,
      user: auth.user.subject,
      credential: auth.credential,
      key: end.keyName,
      model: record.model,
      transport: this.start.transport,
      stream: record.stream,
      status: record.status,
      outcome: record.outcome,
      error_type: record.errorType ?? undefined,
      input_tokens: record.inputTokens,
      output_tokens: record.outputTokens,
      cache_creation_input_tokens: record.cacheCreationInputTokens,
      cache_read_input_tokens: record.cacheReadInputTokens,
      latency_ms: record.latencyMs,
      ttfb_ms: record.ttfbMs,
      retries: record.retries,
      fallback: record.fallback ?? undefined,
    }, 'chat request settled', settledMembers);
    // What waits for the commit holds only the line and the request id, nothing of the request.
    const line = writeLine ?? noop;
    const failed = (err: unknown) => log.error({ err, request_id: requestId }, 'usage record failed');
    const recorded = this.deps.usage.record(record);
    // The limiter's parts are done at once with an in-process store; otherwise waited for too.
    const { limiter } = this.deps;
    const reconciled = reservation ? atOnceOr(() => limiter.settleNow(reservation, total), () => limiter.settle(reservation, total)) : undefined;
    const released = lease ? atOnceOr(() => limiter.releaseStreamNow(lease), () => limiter.releaseStream(lease)) : undefined;
    if (reconciled || released) return Promise.all([recorded.catch(failed), reconciled, released]).then(line);
    return recorded.then(line, (err: unknown) => {
      failed(err);
      line();
    });
  }
}

function noop(): void {}

/** The settled line's fields (settlement's `flatLine` call). */
export interface SettledFields {
  request_id: string;
  user: string;
  credential: AuthContext['credential'];
  key: string | null;
  model: string;
  transport: SettlementStart['transport'];
  stream: boolean;
  status: number;
  outcome: ChatOutcome;
  error_type: string | undefined;
  input_tokens: number;
  output_tokens: number;
  cache_creation_input_tokens: number;
  cache_read_input_tokens: number;
  latency_ms: number;
  ttfb_ms: number | null;
  retries: number;
  fallback: string | undefined;
  [field: string]: string | number | boolean | null | undefined;
}

const json = JSON.stringify;

/**
 * The settled line's fields as JSON members, exactly as `JSON.stringify(f).slice(1, -1)`
 * writes them (test/proxy/settled-line.test.ts holds it to that), in half its time: the keys
 * are known, numbers and booleans are written as they are, and only strings that may need
 * escaping go through JSON.stringify (credential, transport and outcome are fixed words of
 * their types). JSON.stringify of the 18 fields cost about 2.4 µs a request under the proxy
 * bench (docs/benchmarks.md, session 11).
 */
export function settledMembers(f: SettledFields): string {
  return (
    `"request_id":${json(f.request_id)},"user":${json(f.user)},"credential":"${f.credential}",` +
    `"key":${f.key === null ? 'null' : json(f.key)},"model":${json(f.model)},"transport":"${f.transport}",` +
    `"stream":${f.stream},"status":${num(f.status)},"outcome":"${f.outcome}"` +
    (f.error_type === undefined ? '' : `,"error_type":${json(f.error_type)}`) +
    `,"input_tokens":${num(f.input_tokens)},"output_tokens":${num(f.output_tokens)}` +
    `,"cache_creation_input_tokens":${num(f.cache_creation_input_tokens)},"cache_read_input_tokens":${num(f.cache_read_input_tokens)}` +
    `,"latency_ms":${num(f.latency_ms)},"ttfb_ms":${f.ttfb_ms === null ? 'null' : num(f.ttfb_ms)},"retries":${num(f.retries)}` +
    (f.fallback === undefined ? '' : `,"fallback":${json(f.fallback)}`)
  );
}

/** A number as JSON writes it (NaN and infinities as null). */
function num(n: number): string {
  return Number.isFinite(n) ? `${n}` : 'null';
}

/**
 * Runs `now`, which returns true when it has done the work; otherwise `later`'s promise.
 * Failures are ignored either way (settling never throws; the limiter logs store failures).
 */
function atOnceOr(now: () => boolean, later: () => Promise<void>): Promise<void> | undefined {
  try {
    if (now()) return undefined;
  } catch {
    return undefined;
  }
  return later().catch(noop);
}
