/**
 * Header policy between our clients and Anthropic, as data.
 *
 * Request direction: every client header reaches upstream unchanged (so `anthropic-version`,
 * `anthropic-beta`, `user-agent`, `x-claude-code-session-id` and headers that do not exist yet
 * all pass), EXCEPT the ones listed below: the client's own credentials (upstream gets OUR key),
 * cookies, hop-by-hop headers (RFC 9110 §7.6.1, plus any named in `Connection`), framing that
 * undici recomputes, forwarding/browser headers that would leak the client's address or trigger
 * Anthropic's browser (CORS) rules, and our own `x-portcullis-*` headers.
 * `accept-encoding` is dropped so upstream answers uncompressed: the SSE tap reads the bytes it
 * passes on, and the gateway compresses towards clients itself if it wants to.
 *
 * Response direction: an allowlist. `request-id` (lets people quote Anthropic's id to support),
 * `content-type`, `retry-after`, `retry-after-ms` and `x-should-retry` (drive the SDKs' retry
 * logic). Upstream's `anthropic-ratelimit-*` headers are NOT passed by default: they describe
 * the organisation's shared pool behind whichever key served this attempt (a different key
 * next time), not the caller's allowance, and they reveal the organisation's capacity. The
 * gateway's own limiter sets `anthropic-ratelimit-*` headers for the user instead. Pass
 * `{ rateLimit: true }` to keep upstream's (single-tenant deployments).
 */
import type { IncomingHttpHeaders } from 'node:http';

/** Request headers never forwarded upstream (lower case). */
export const DROPPED_REQUEST_HEADERS: ReadonlySet<string> = new Set([
  // credentials and cookies: upstream gets the lease's key, never the client's
  'authorization',
  'x-api-key',
  'cookie',
  'proxy-authorization',
  // hop-by-hop and framing
  'host',
  'content-length',
  'connection',
  'keep-alive',
  'transfer-encoding',
  'upgrade',
  'te',
  'trailer',
  'proxy-connection',
  'expect',
  'http2-settings',
  // we choose the encoding (see above)
  'accept-encoding',
  // forwarding and browser context
  'forwarded',
  'via',
  'x-real-ip',
  'origin',
  'referer',
  // our request id replaces the client's
  'x-request-id',
]);

/** Request header prefixes never forwarded upstream. */
export const DROPPED_REQUEST_PREFIXES: readonly string[] = ['proxy-', 'x-forwarded-', 'sec-', 'x-portcullis-'];

/** Response headers passed from upstream to our client (lower case). */
export const CLIENT_RESPONSE_HEADERS: readonly string[] = ['content-type', 'request-id', 'retry-after', 'retry-after-ms', 'x-should-retry'];

/** Upstream's organisation rate-limit headers (passed only with `{ rateLimit: true }`). */
export const RATE_LIMIT_PREFIX = 'anthropic-ratelimit-';

/** A header value as a single string (repeated headers joined with ", "). */
export function headerValue(value: string | string[] | undefined): string | undefined {
  if (value === undefined) return undefined;
  return Array.isArray(value) ? value.join(', ') : value;
}

const NO_TOKENS: ReadonlySet<string> = new Set();

function connectionTokens(headers: IncomingHttpHeaders): ReadonlySet<string> {
  const raw = headerValue(headers.connection);
  return raw ? new Set(raw.split(',').map((t) => t.trim().toLowerCase()).filter(Boolean)) : NO_TOKENS;
}

export interface UpstreamHeaderOptions {
  /** The lease's decrypted key, sent as `x-api-key`. */
  apiKey: string;
  /** Our request id, sent as `x-request-id`. */
  requestId: string;
}

/**
 * The headers to send upstream for one attempt: the client's headers filtered by the policy
 * above, plus `x-api-key` and `x-request-id`. Never mutates its input.
 */
export function upstreamRequestHeaders(client: IncomingHttpHeaders, options: UpstreamHeaderOptions): Record<string, string> {
  const named = connectionTokens(client);
  const out: Record<string, string> = {};
  for (const rawName in client) {
    const name = rawName.toLowerCase();
    const value = headerValue(client[rawName]);
    if (value === undefined) continue;
    if (DROPPED_REQUEST_HEADERS.has(name) || named.has(name)) continue;
    if (DROPPED_REQUEST_PREFIXES.some((p) => name.startsWith(p))) continue;
    out[name] = value;
  }
  out['x-api-key'] = options.apiKey;
  out['x-request-id'] = options.requestId;
  return out;
}

/**
 * The upstream response headers a client may see (allowlist above). Hop-by-hop and framing
 * headers (content-length, transfer-encoding, connection…) are never in it: the HTTP server
 * in front computes its own framing. `upstream`'s names are lower case, as Node's and
 * undici's parsers give them: the allowlist is looked up, upstream's headers are not walked
 * (they are many, and walking them cost about 2 µs a request), unless `rateLimit` asks for a
 * prefix.
 */
export function responseHeadersForClient(upstream: IncomingHttpHeaders, options: { rateLimit?: boolean } = {}): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of CLIENT_RESPONSE_HEADERS) {
    const value = headerValue(upstream[name]);
    if (value !== undefined) out[name] = value;
  }
  if (options.rateLimit === true) {
    for (const name in upstream) {
      const value = headerValue(upstream[name]);
      if (value !== undefined && name.startsWith(RATE_LIMIT_PREFIX)) out[name] = value;
    }
  }
  return out;
}
