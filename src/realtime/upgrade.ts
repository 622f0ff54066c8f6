/**
 * The checks an upgrade request passes before any WebSocket exists, and the plain HTTP
 * refusal written on the raw socket when it fails. Order: draining (503), path (404),
 * per-IP upgrade rate (429), protocol version (400), Origin (403), credentials (401/403),
 * per-user connection cap (429, done by the caller).
 */
import type { IncomingMessage } from 'node:http';
import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import type { AuthContext, AuthInput, Authenticate } from '../auth/authenticate.js';
import { GatewayError, renderError } from '../errors/index.js';
import type { RateLimiter } from '../ratelimit/index.js';
import { authenticateWithinFailureLimit, rateLimitError } from '../ratelimit/index.js';
import { BEARER_PREFIX, PROTOCOL } from './protocol.js';

export const WS_PATH = '/v1/ws';

export interface UpgradeRequestInfo {
  ip: string;
  userAgent: string | null;
  /** The subprotocol to select, or null when the client offered none. */
  protocol: string | null;
  origin: string | null;
}

export interface UpgradeDeps {
  authenticate: Authenticate;
  limiter: RateLimiter;
  origins: Set<string>;
  trustProxy: boolean;
  parseCookie: (header: string) => Record<string, string | undefined>;
}

/** The client address: the first X-Forwarded-For hop when TRUST_PROXY is on, else the peer. */
export function clientIp(req: IncomingMessage, trustProxy: boolean): string {
  if (trustProxy) {
    const forwarded = req.headers['x-forwarded-for'];
    const first = (Array.isArray(forwarded) ? forwarded[0] : forwarded)?.split(',')[0]?.trim();
    if (first) return first;
  }
  return req.socket.remoteAddress ?? '0.0.0.0';
}

function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/**
 * Reads the credentials of an upgrade: Authorization, a `bearer.<token>` subprotocol entry
 * (browsers), or the session cookie; and the subprotocol to answer with.
 */
export function upgradeCredentials(req: IncomingMessage, parseCookie: UpgradeDeps['parseCookie']): { input: AuthInput; protocol: string | null } {
  const offered = (header(req, 'sec-websocket-protocol') ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  let protocol: string | null = null;
  let bearer: string | undefined;
  for (const entry of offered) {
    if (entry === PROTOCOL) protocol = PROTOCOL;
    else if (entry.startsWith(BEARER_PREFIX)) bearer = entry.slice(BEARER_PREFIX.length);
  }
  if (offered.length > 0 && protocol === null) {
    throw new GatewayError('invalid_request', `Unsupported WebSocket protocol; offer ${PROTOCOL}`, { reason: 'unsupported_protocol' });
  }
  const cookieHeader = header(req, 'cookie');
  const input: AuthInput = {
    authorization: header(req, 'authorization') ?? (bearer !== undefined ? `Bearer ${bearer}` : undefined),
    cookies: cookieHeader ? parseCookie(cookieHeader) : {},
  };
  return { input, protocol };
}

/**
 * Runs every pre-upgrade check but the connection cap; throws a GatewayError to refuse.
 * Failed credentials count against the IP's failure allowance.
 */
export async function admitUpgrade(req: IncomingMessage, deps: UpgradeDeps): Promise<{ auth: AuthContext; info: UpgradeRequestInfo }> {
  const ip = clientIp(req, deps.trustProxy);
  const rate = await deps.limiter.admitIp(ip, 'upgrade');
  if (!rate.allowed) throw rateLimitError(rate);
  const { input, protocol } = upgradeCredentials(req, deps.parseCookie);
  const origin = header(req, 'origin') ?? null;
  if (origin !== null && !deps.origins.has(origin)) {
    throw new GatewayError('permission_denied', 'WebSocket refused: Origin is not allowed', { reason: 'origin_not_allowed' });
  }
  const auth = await authenticateWithinFailureLimit({ limiter: deps.limiter, authenticate: deps.authenticate, ip, input });
  if (auth.credential === 'cookie' && origin === null) {
    throw new GatewayError('permission_denied', 'WebSocket refused: a cookie-authenticated upgrade must carry an allowed Origin', { reason: 'origin_required' });
  }
  return { auth, info: { ip, userAgent: header(req, 'user-agent')?.slice(0, 512) ?? null, protocol, origin } };
}

/** Writes an HTTP error answer (Anthropic's error body) on the raw socket and closes it. */
export function refuseUpgrade(socket: Duplex, err: unknown, requestId: string): number {
  const { status, body, headers } = renderError(err, requestId);
  if (socket.destroyed || !socket.writable) {
    socket.destroy();
    return status;
  }
  const text = JSON.stringify(body);
  const lines = [
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}`,
    'Connection: close',
    'Content-Type: application/json',
    `Content-Length: ${Buffer.byteLength(text)}`,
    `x-request-id: ${requestId}`,
    ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
  ];
  socket.end(`${lines.join('\r\n')}\r\n\r\n${text}`);
  setTimeout(() => socket.destroy(), 1_000).unref();
  return status;
}
