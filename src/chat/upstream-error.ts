/** Upstream's own error answer (a 4xx passed through) as a GatewayError, for doors without HTTP. */
import { GatewayError, codeForStatus } from '../errors/index.js';

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
  return new GatewayError(codeForStatus(status), message, { reason: type ?? 'upstream_error' });
}
