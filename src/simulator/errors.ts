/**
 * Anthropic's own error wording, as the simulator sends it. The gateway's catalogue
 * (`src/errors`) adds a `code` beside the type; upstream does not, so the simulator renders
 * the bare upstream shape `{"type":"error","error":{type,message},"request_id"}`.
 */
import type { AnthropicErrorType } from '../errors/index.js';

/** A failure the simulator answers with, thrown from handlers and rendered by one handler. */
export class SimulatedHttpError extends Error {
  readonly status: number;
  readonly type: AnthropicErrorType;
  readonly headers: Record<string, string>;

  constructor(status: number, message?: string, options: { type?: AnthropicErrorType; headers?: Record<string, string> } = {}) {
    const type = options.type ?? typeForStatus(status);
    super(message ?? defaultMessage(type));
    this.name = 'SimulatedHttpError';
    this.status = status;
    this.type = type;
    this.headers = options.headers ?? {};
  }
}

const byStatus: Record<number, AnthropicErrorType> = {
  400: 'invalid_request_error',
  401: 'authentication_error',
  402: 'billing_error',
  403: 'permission_error',
  404: 'not_found_error',
  409: 'conflict_error',
  413: 'request_too_large',
  429: 'rate_limit_error',
  500: 'api_error',
  504: 'timeout_error',
  529: 'overloaded_error',
};

const statusByType: Record<AnthropicErrorType, number> = {
  invalid_request_error: 400,
  authentication_error: 401,
  billing_error: 402,
  permission_error: 403,
  not_found_error: 404,
  conflict_error: 409,
  request_too_large: 413,
  rate_limit_error: 429,
  api_error: 500,
  timeout_error: 504,
  overloaded_error: 529,
};

const messages: Record<AnthropicErrorType, string> = {
  invalid_request_error: 'Invalid request',
  authentication_error: 'invalid x-api-key',
  billing_error: 'Your credit balance is too low to access the Anthropic API.',
  permission_error: 'Your API key does not have permission to use the specified resource.',
  not_found_error: 'The requested resource could not be found.',
  conflict_error: 'Conflict',
  request_too_large: 'Request exceeds the maximum allowed number of bytes.',
  rate_limit_error: "This request would exceed your organization's rate limit. Please try again later.",
  api_error: 'Internal server error',
  timeout_error: 'Request timed out',
  overloaded_error: 'Overloaded',
};

/** The Anthropic error type for a status: the table in REFERENCE.md, else by class. */
export function typeForStatus(status: number): AnthropicErrorType {
  return byStatus[status] ?? (status >= 500 ? 'api_error' : 'invalid_request_error');
}

/** The HTTP status Anthropic uses for an error type. */
export function statusForType(type: AnthropicErrorType): number {
  return statusByType[type];
}

export function defaultMessage(type: AnthropicErrorType): string {
  return messages[type];
}

/** The JSON body of an error answer. */
export function errorBody(type: AnthropicErrorType, message: string, requestId: string): string {
  return JSON.stringify({ type: 'error', error: { type, message }, request_id: requestId });
}

/** The `data:` payload of a mid-stream `event: error` (no request_id, as upstream). */
export function streamErrorData(type: AnthropicErrorType, message: string): string {
  return JSON.stringify({ type: 'error', error: { type, message } });
}

/** Maps Fastify's own failures (body too large, bad JSON, …) onto Anthropic's wording. */
export function fromFrameworkError(err: unknown): SimulatedHttpError {
  if (err instanceof SimulatedHttpError) return err;
  const e = err as { statusCode?: number; code?: string; message?: string };
  if (e?.code === 'FST_ERR_CTP_BODY_TOO_LARGE' || e?.statusCode === 413) return new SimulatedHttpError(413);
  if (e?.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') return new SimulatedHttpError(400, 'Content-Type must be application/json');
  if (typeof e?.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
    return new SimulatedHttpError(400, 'There was an error parsing the body of your request');
  }
  return new SimulatedHttpError(500);
}
