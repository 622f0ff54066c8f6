/**
 * Session cookies for browsers, and the CSRF defence that comes with them.
 *
 * - `pcl_at`: the access JWT; HttpOnly, SameSite=Lax, path `/`.
 * - `pcl_rt`: the refresh token; HttpOnly, SameSite=Lax, path `/auth` only.
 * - `pcl_csrf`: a random value readable by page scripts (not HttpOnly). A state-changing
 *   request authenticated by cookie must echo it in `x-csrf-token` (double submit) and come
 *   from PUBLIC_URL's origin or one of ALLOWED_ORIGINS (Origin, else Referer).
 * All are `Secure` when PUBLIC_URL is https.
 */
import { randomBytes } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Config } from '../config/index.js';
import { GatewayError } from '../errors/index.js';
import { safeEqual } from '../security/tokens.js';
import type { IssuedTokens } from './sessions.js';

export const ACCESS_COOKIE = 'pcl_at';
export const REFRESH_COOKIE = 'pcl_rt';
export const CSRF_COOKIE = 'pcl_csrf';
export const CSRF_HEADER = 'x-csrf-token';
export const REFRESH_COOKIE_PATH = '/auth';

type CookieConfig = Pick<Config, 'publicUrl' | 'refreshTokenTtl' | 'allowedOrigins'>;

function secure(config: Pick<Config, 'publicUrl'>): boolean {
  return config.publicUrl.startsWith('https:');
}

/**
 * Sets the access, refresh and CSRF cookies for freshly issued tokens. The refresh cookie
 * lives as long as the refresh token (REFRESH_TOKEN_TTL, capped by the session's end).
 */
export function setSessionCookies(reply: FastifyReply, tokens: IssuedTokens, config: CookieConfig): void {
  const base = { httpOnly: true, sameSite: 'lax' as const, secure: secure(config) };
  const refreshSeconds = Math.max(0, Math.floor(Math.min(config.refreshTokenTtl, tokens.session.expiresAt - Date.now()) / 1000));
  reply.setCookie(ACCESS_COOKIE, tokens.accessToken, { ...base, path: '/', maxAge: tokens.expiresIn });
  reply.setCookie(REFRESH_COOKIE, tokens.refreshToken, { ...base, path: REFRESH_COOKIE_PATH, maxAge: refreshSeconds });
  reply.setCookie(CSRF_COOKIE, randomBytes(24).toString('base64url'), { httpOnly: false, sameSite: 'lax', secure: secure(config), path: '/', maxAge: refreshSeconds });
}

/** Clears the three session cookies (logout). */
export function clearSessionCookies(reply: FastifyReply, config: Pick<Config, 'publicUrl'>): void {
  const base = { httpOnly: true, sameSite: 'lax' as const, secure: secure(config) };
  reply.clearCookie(ACCESS_COOKIE, { ...base, path: '/' });
  reply.clearCookie(REFRESH_COOKIE, { ...base, path: REFRESH_COOKIE_PATH });
  reply.clearCookie(CSRF_COOKIE, { httpOnly: false, sameSite: 'lax', secure: secure(config), path: '/' });
}

/** The origins whose pages may use cookie sessions: PUBLIC_URL's plus ALLOWED_ORIGINS. */
export function allowedOrigins(config: Pick<Config, 'publicUrl' | 'allowedOrigins'>): Set<string> {
  const out = new Set<string>();
  for (const value of [config.publicUrl, ...config.allowedOrigins]) {
    try {
      out.add(new URL(value).origin);
    } catch {
      // a malformed ALLOWED_ORIGINS entry allows nothing
    }
  }
  return out;
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/** True for methods that change state and so need the CSRF checks under cookie auth. */
export function isStateChanging(method: string): boolean {
  return !SAFE_METHODS.has(method.toUpperCase());
}

/**
 * Refuses (403 permission_denied) a cookie-authenticated request whose origin is foreign
 * (reason `csrf_origin`) or whose `x-csrf-token` does not equal the `pcl_csrf` cookie
 * (reason `csrf_token`). Call it only for state-changing requests.
 */
export function checkCsrf(request: Pick<FastifyRequest, 'headers' | 'cookies'>, config: Pick<Config, 'publicUrl' | 'allowedOrigins'>): void {
  const origin = requestOrigin(request.headers);
  if (!origin || !allowedOrigins(config).has(origin)) {
    throw new GatewayError('permission_denied', 'Cross-site request refused: Origin is not allowed', { reason: 'csrf_origin' });
  }
  const cookie = request.cookies?.[CSRF_COOKIE];
  const header = request.headers[CSRF_HEADER];
  if (!cookie || typeof header !== 'string' || !safeEqual(cookie, header)) {
    throw new GatewayError('permission_denied', `Cross-site request refused: ${CSRF_HEADER} header must equal the ${CSRF_COOKIE} cookie`, {
      reason: 'csrf_token',
    });
  }
}

function requestOrigin(headers: FastifyRequest['headers']): string | null {
  const origin = headers.origin;
  if (typeof origin === 'string' && origin !== 'null') return origin;
  const referer = headers.referer;
  if (typeof referer === 'string') {
    try {
      return new URL(referer).origin;
    } catch {
      return null;
    }
  }
  return null;
}
