/**
 * Session and token routes: refresh, logout, who am I, my sessions and personal tokens,
 * the JWKS, and (in auth-admin-routes.ts) the admin equivalents. Bodies are validated
 * with zod; every failure is a GatewayError rendered by the app's error handler.
 * Tokens appear only in response bodies and cookies, never in logs.
 */
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { ACCESS_COOKIE, REFRESH_COOKIE, checkCsrf, clearSessionCookies, setSessionCookies } from '../auth/cookies.js';
import type { AuthContext } from '../auth/authenticate.js';
import { authenticateRequest } from '../auth/guard.js';
import type { PersonalTokenInfo } from '../auth/personal-tokens.js';
import { modelGlob } from '../auth/personal-tokens.js';
import type { SessionInfo } from '../auth/sessions.js';
import { parseDuration } from '../config/parsers.js';
import { GatewayError } from '../errors/index.js';
import { hashToken } from '../security/tokens.js';
import { authAdminRoutes } from './auth-admin-routes.js';

/** Parses `value` with `schema` or fails 400 naming the first bad field. */
export function validate<T>(schema: z.ZodType<T>, value: unknown): T {
  const result = schema.safeParse(value ?? {});
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  throw new GatewayError('invalid_request', `${issue?.path.join('.') || 'body'}: ${issue?.message ?? 'invalid'}`, { reason: 'invalid_body' });
}

export function sessionJson(s: SessionInfo, currentId: string | null = null) {
  return {
    id: s.id,
    user_id: s.userId,
    created_at: s.createdAt,
    last_seen_at: s.lastSeenAt,
    ip: s.ip,
    user_agent: s.userAgent,
    issuer: s.issuer,
    expires_at: s.expiresAt,
    revoked_at: s.revokedAt,
    revoked_reason: s.revokedReason,
    current: s.id === currentId,
  };
}

export function tokenJson(t: PersonalTokenInfo) {
  return {
    id: t.id,
    user_id: t.userId,
    name: t.name,
    models: t.models,
    created_at: t.createdAt,
    expires_at: t.expiresAt,
    last_used_at: t.lastUsedAt,
    revoked_at: t.revokedAt,
  };
}

/** `{name, expires_in?: "30d" | seconds, models?: [globs]}`, the body creating a personal token. */
export const createTokenBody = z.object({
  name: z.string().trim().min(1).max(100),
  expires_in: z.union([z.string().max(32), z.number().int().positive()]).optional(),
  models: z.array(modelGlob).min(1).max(50).optional(),
});

export function tokenExpiry(expiresIn: string | number | undefined, now: number): number | null {
  if (expiresIn === undefined) return null;
  const ms = typeof expiresIn === 'number' ? expiresIn * 1000 : parseDuration(expiresIn);
  if (ms === undefined || ms <= 0) throw new GatewayError('invalid_request', 'expires_in: expected a duration such as 30d, or seconds', { reason: 'invalid_body' });
  return now + ms;
}

const refreshBody = z.object({ refresh_token: z.string().min(1).max(512).optional() }).strict();
const idParams = z.object({ id: z.string().min(1).max(100) });

function meta(request: FastifyRequest) {
  const ua = request.headers['user-agent'];
  return { ip: request.ip, userAgent: typeof ua === 'string' ? ua : null };
}

function auth(request: FastifyRequest): AuthContext {
  if (!request.auth) throw new GatewayError('unauthenticated', 'Not signed in', { reason: 'missing_credentials' });
  return request.auth;
}

export const authRoutes: FastifyPluginAsync = async (app) => {
  const { config, sessions, personalTokens, users, signingKeys, authenticate, limiter } = app.services;
  // A POST with no body (cookie refresh, logout) is fine even when it says application/json.
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_request, body, done) => {
    const text = typeof body === 'string' ? body : body.toString('utf8');
    if (text.trim() === '') return done(null, undefined);
    try {
      done(null, JSON.parse(text));
    } catch {
      done(new GatewayError('invalid_request', 'The body is not valid JSON', { reason: 'invalid_json' }), undefined);
    }
  });

  app.get('/.well-known/jwks.json', async (_request, reply) => {
    reply.header('cache-control', 'public, max-age=300');
    return signingKeys.jwks();
  });

  app.post('/auth/refresh', async (request, reply) => {
    const body = validate(refreshBody, request.body);
    if (body.refresh_token) {
      const tokens = await sessions.refresh(body.refresh_token, meta(request));
      return { access_token: tokens.accessToken, refresh_token: tokens.refreshToken, token_type: 'Bearer', expires_in: tokens.expiresIn };
    }
    const cookie = request.cookies[REFRESH_COOKIE];
    if (!cookie) throw new GatewayError('unauthenticated', 'Send {"refresh_token": …} or the refresh cookie', { reason: 'missing_credentials' });
    checkCsrf(request, config);
    try {
      const tokens = await sessions.refresh(cookie, meta(request));
      setSessionCookies(reply, tokens, config);
      return { access_token: tokens.accessToken, token_type: 'Bearer', expires_in: tokens.expiresIn };
    } catch (err) {
      if (err instanceof GatewayError && err.status === 401) clearSessionCookies(reply, config);
      throw err;
    }
  });

  app.post('/auth/logout', async (request, reply) => {
    const body = validate(refreshBody, request.body);
    const usesCookies = !request.headers.authorization && !request.headers['x-api-key'] && !body.refresh_token;
    if (usesCookies && (request.cookies[ACCESS_COOKIE] || request.cookies[REFRESH_COOKIE])) checkCsrf(request, config);
    const refresh = body.refresh_token ?? (usesCookies ? request.cookies[REFRESH_COOKIE] : undefined);
    let sessionId: string | null;
    try {
      sessionId = (await authenticateRequest(request, { authenticate, limiter, config })).sessionId;
    } catch (err) {
      // An expired access token must not stop a logout: fall back to the refresh token.
      if (!refresh || !(err instanceof GatewayError) || err.status !== 401) throw err;
      sessionId = await sessions.sessionOfRefreshToken(hashToken(refresh));
      if (!sessionId) throw err;
    }
    // A credential without a session (a personal token) with a refresh token: the refresh
    // token's session ends, as it would have without the header.
    if (sessionId === null && refresh) sessionId = await sessions.sessionOfRefreshToken(hashToken(refresh));
    if (sessionId) await sessions.revoke(sessionId, 'logout');
    if (usesCookies) clearSessionCookies(reply, config);
    return reply.code(204).send();
  });

  app.get('/auth/me', { preHandler: app.requireAuth }, async (request) => {
    const a = auth(request);
    const view = await users.view(a.user.id);
    return {
      id: view.id,
      subject: view.subject,
      issuer: view.issuer,
      name: view.displayName,
      email: view.email,
      wallet_address: view.walletAddress,
      roles: view.roles,
      grants: view.grants,
      permissions: a.permissions,
      credential: a.credential,
      session_id: a.sessionId,
      personal_token_id: a.personalTokenId,
      expires_at: a.expiresAt,
    };
  });

  app.get('/auth/sessions', { preHandler: app.requireAuth }, async (request) => {
    const a = auth(request);
    return { data: (await sessions.list(a.user.id)).map((s) => sessionJson(s, a.sessionId)) };
  });

  app.delete('/auth/sessions/:id', { preHandler: app.requireAuth }, async (request, reply) => {
    const a = auth(request);
    const { id } = validate(idParams, request.params);
    const session = await sessions.get(id);
    if (!session || session.userId !== a.user.id) throw new GatewayError('not_found', `No session ${id}`, { reason: 'session_not_found' });
    await sessions.revoke(id, 'user_revoked');
    if (id === a.sessionId && a.credential === 'cookie') clearSessionCookies(reply, config);
    return reply.code(204).send();
  });

  app.post('/auth/tokens', { preHandler: app.requireAuth }, async (request, reply) => createToken(request, reply, auth(request).user.id));

  app.get('/auth/tokens', { preHandler: app.requireAuth }, async (request) => ({
    data: (await personalTokens.list(auth(request).user.id)).map(tokenJson),
  }));

  app.delete('/auth/tokens/:id', { preHandler: app.requireAuth }, async (request, reply) => {
    const { id } = validate(idParams, request.params);
    await personalTokens.revoke(id, auth(request).user.id);
    return reply.code(204).send();
  });

  /**
   * Creates a personal token for `userId`; the token is in this answer and nowhere else.
   * Never with a personal token as the credential (here or on the admin route): a narrowed
   * token must not mint a wider one.
   */
  async function createToken(request: FastifyRequest, reply: FastifyReply, userId: string) {
    if (auth(request).credential === 'personal_token') {
      throw new GatewayError('permission_denied', 'Personal tokens cannot create personal tokens; sign in', { reason: 'personal_token_not_allowed' });
    }
    const body = validate(createTokenBody, request.body);
    const { token, info } = await personalTokens.create(userId, {
      name: body.name,
      expiresAt: tokenExpiry(body.expires_in, Date.now()),
      models: body.models ?? null,
    });
    reply.header('cache-control', 'no-store');
    return reply.code(201).send({ ...tokenJson(info), token });
  }

  await app.register(authAdminRoutes, { createToken });
};
