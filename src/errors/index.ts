/**
 * One error catalogue for the whole gateway.
 *
 * Every failure that can reach a client is a `GatewayError` with a `code` from the union
 * below. The code decides the HTTP status and the Anthropic error type, so every door
 * (HTTP, WebSocket, CLI) renders the same failure the same way. Messages name the field
 * and the reason but never carry a secret.
 */

/** Anthropic's error types, as its API and SDKs know them. */
export type AnthropicErrorType =
  | 'invalid_request_error'
  | 'authentication_error'
  | 'billing_error'
  | 'permission_error'
  | 'not_found_error'
  | 'conflict_error'
  | 'request_too_large'
  | 'rate_limit_error'
  | 'api_error'
  | 'timeout_error'
  | 'overloaded_error';

const catalogue = {
  invalid_request: { status: 400, type: 'invalid_request_error' },
  unauthenticated: { status: 401, type: 'authentication_error' },
  permission_denied: { status: 403, type: 'permission_error' },
  not_found: { status: 404, type: 'not_found_error' },
  conflict: { status: 409, type: 'conflict_error' },
  request_too_large: { status: 413, type: 'request_too_large' },
  rate_limited: { status: 429, type: 'rate_limit_error' },
  internal: { status: 500, type: 'api_error' },
  /** A service we depend on (an identity provider, say) answered nonsense. */
  bad_gateway: { status: 502, type: 'api_error' },
  unavailable: { status: 503, type: 'api_error' },
  upstream_timeout: { status: 504, type: 'timeout_error' },
  overloaded: { status: 529, type: 'overloaded_error' },
} as const satisfies Record<string, { status: number; type: AnthropicErrorType }>;

export type ErrorCode = keyof typeof catalogue;

export interface GatewayErrorOptions {
  /** A finer, machine-readable reason, e.g. `token_expired` or `user_exists`. */
  reason?: string;
  /** Seconds a client should wait before retrying (429, 529, 503). */
  retryAfterSeconds?: number;
  /** The same wait to the millisecond, when known (a rate limit's); WebSocket frames carry it. */
  retryAfterMs?: number;
  /** Extra response headers (e.g. the rate-limit headers of a 429). */
  headers?: Record<string, string>;
  cause?: unknown;
}

export class GatewayError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly type: AnthropicErrorType;
  /** Whether the message may be shown to the client (internal errors are masked). */
  readonly expose: boolean;
  readonly reason: string | undefined;
  readonly retryAfterSeconds: number | undefined;
  readonly retryAfterMs: number | undefined;
  readonly headers: Record<string, string> | undefined;

  constructor(code: ErrorCode, message: string, options: GatewayErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'GatewayError';
    this.code = code;
    this.status = catalogue[code].status;
    this.type = catalogue[code].type;
    // Of the 5xx, only `internal` hides its message (it may wrap anything); the others carry ours.
    this.expose = code !== 'internal';
    this.reason = options.reason;
    this.retryAfterSeconds = options.retryAfterSeconds;
    this.retryAfterMs = options.retryAfterMs;
    this.headers = options.headers;
  }
}

export function isGatewayError(value: unknown): value is GatewayError {
  return value instanceof GatewayError;
}

/** Anthropic's error body, with our machine-readable `code` beside its `type`. */
export interface ErrorBody {
  type: 'error';
  error: { type: AnthropicErrorType; message: string; code?: string };
  request_id?: string;
}

/**
 * Turns any thrown value into a status and an Anthropic-shaped body. Unknown errors
 * become a masked 500: their message may hold anything, so it is never shown.
 */
export function renderError(err: unknown, requestId?: string): { status: number; body: ErrorBody; headers: Record<string, string> } {
  const gateway = toGatewayError(err);
  const message = gateway.expose ? gateway.message : 'Internal server error';
  const body: ErrorBody = {
    type: 'error',
    error: { type: gateway.type, message, code: gateway.reason ?? gateway.code },
  };
  const headers: Record<string, string> = { ...gateway.headers };
  if (requestId) {
    body.request_id = requestId;
    // Where Anthropic's SDKs read an answer's id (APIError.requestID), as on Anthropic's own errors.
    headers['request-id'] = requestId;
  }
  if (gateway.retryAfterSeconds !== undefined) headers['retry-after'] = String(Math.max(0, Math.ceil(gateway.retryAfterSeconds)));
  return { status: gateway.status, body, headers };
}

const codeByStatus: Partial<Record<number, ErrorCode>> = {
  401: 'unauthenticated',
  403: 'permission_denied',
  404: 'not_found',
  409: 'conflict',
  413: 'request_too_large',
  429: 'rate_limited',
  529: 'overloaded',
};

/** The catalogue code for an HTTP status from elsewhere (Fastify, upstream): other 4xx are invalid requests, other 5xx unavailable. */
export function codeForStatus(status: number): ErrorCode {
  return codeByStatus[status] ?? (status >= 500 ? 'unavailable' : 'invalid_request');
}

/** Maps framework and validation errors onto the catalogue; everything else is internal. */
export function toGatewayError(err: unknown): GatewayError {
  if (err instanceof GatewayError) return err;
  const e = err as { statusCode?: number; code?: string; message?: string; validation?: unknown };
  if (e && typeof e === 'object' && typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
    return new GatewayError(codeForStatus(e.statusCode), e.message ?? 'Bad request', { reason: e.code?.toLowerCase(), cause: err });
  }
  return new GatewayError('internal', 'Internal server error', { cause: err });
}
