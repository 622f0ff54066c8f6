/**
 * Typed errors of the Portcullis client. Every failure a chat or the connection reports is
 * a `PortcullisError`; the subclasses let an app react without parsing messages:
 * wait (`RateLimitedError.retryAfterMs`, `OverloadedError`), sign in again
 * (`AuthExpiredError`), or fix the request (`InvalidRequestError`, `ProtocolError`).
 */

/** Anthropic's error shape as the gateway sends it in `chat.error` / `error` frames. */
export interface ErrorBody {
  type: string;
  message: string;
  code?: string;
}

export class PortcullisError extends Error {
  /** Anthropic's error type (`rate_limit_error`, …) or a client-side one (`connection_closed`). */
  readonly type: string;
  /** Milliseconds the server asked to wait before retrying, when it said. */
  readonly retryAfterMs: number | undefined;

  constructor(type: string, message: string, retryAfterMs?: number) {
    super(message);
    this.name = new.target.name;
    this.type = type;
    this.retryAfterMs = retryAfterMs;
  }
}

/** Too many requests or tokens for this user: wait `retryAfterMs` before trying again. */
export class RateLimitedError extends PortcullisError {
  declare readonly retryAfterMs: number | undefined;
}

/** The upstream is overloaded (or the server is draining): retry later. */
export class OverloadedError extends PortcullisError {}

/** The credential expired or was revoked and could not be refreshed: sign in again. */
export class AuthExpiredError extends PortcullisError {}

/** The user may not do this (model not allowed, missing capability). */
export class PermissionDeniedError extends PortcullisError {}

/** The request was refused as malformed (bad model, bad body). */
export class InvalidRequestError extends PortcullisError {}

/** The chat's stream could not be resumed after a reconnect (too old, or unknown). */
export class ResumeUnavailableError extends PortcullisError {}

/** The server closed the connection for a policy reason (1008/1009) or the client was closed. */
export class ProtocolError extends PortcullisError {
  /** The WebSocket close code, when a close caused it. */
  readonly closeCode: number | undefined;
  constructor(type: string, message: string, closeCode?: number) {
    super(type, message);
    this.closeCode = closeCode;
  }
}

/** Anything else the upstream or the gateway reported (`api_error`, `timeout_error`, …). */
export class ApiError extends PortcullisError {}

/** Maps an error body (and the frame's `retry_after_ms`) to its typed error. */
export function errorFromBody(body: ErrorBody, retryAfterMs?: number): PortcullisError {
  const message = body.message || body.type;
  switch (body.type) {
    case 'rate_limit_error':
      return new RateLimitedError(body.type, message, retryAfterMs);
    case 'overloaded_error':
      return new OverloadedError(body.type, message, retryAfterMs);
    case 'authentication_error':
      return new AuthExpiredError(body.type, message, retryAfterMs);
    case 'permission_error':
      return new PermissionDeniedError(body.type, message, retryAfterMs);
    case 'invalid_request_error':
    case 'not_found_error':
    case 'request_too_large':
      return new InvalidRequestError(body.type, message, retryAfterMs);
    case 'resume_unavailable':
      return new ResumeUnavailableError(body.type, message, retryAfterMs);
    default:
      return new ApiError(body.type || 'api_error', message, retryAfterMs);
  }
}
