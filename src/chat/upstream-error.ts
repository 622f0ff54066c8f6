/** Upstream's own error answer (a 4xx passed through) as a GatewayError, for doors without HTTP. */
import type { ErrorCode } from '../errors/index.js';
import { GatewayError } from '../errors/index.js';

const byStatus: Record<number, ErrorCode> = {
  400: 'invalid_request',
  401: 'unauthenticated',
  403: 'permission_denied',
  404: 'not_found',
  409: 'conflict',
  413: 'request_too_large',
  429: 'rate_limited',
  529: 'overloaded',
};

export function upstreamError(status: number, bytes: Buffer): GatewayError {
  let message = `Upstream answered ${status}`;
  let type: string | undefined;
  try {
    const body = JSON.parse(bytes.toString('utf8')) as { error?: { type?: unknown; message?: unknown } };
    if (typeof body.error?.message === 'string') message = body.error.message;
    if (typeof body.error?.type === 'string') type = body.error.type;
  } catch {
    // Not JSON: keep the generic message.
  }
  return new GatewayError(byStatus[status] ?? (status >= 500 ? 'unavailable' : 'invalid_request'), message, { reason: type ?? 'upstream_error' });
}
