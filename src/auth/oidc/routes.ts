/**
 * Sign-in routes: `GET /auth/login` sends the person to the identity provider,
 * `GET|POST /auth/callback` (query and form_post response modes) finishes the login,
 * records the user and starts a session. The development provider is mounted beside
 * them when it runs.
 *
 * Guarantees: a login state is server-side, single use and ten minutes long; the
 * callback must come from the browser that started the login (a cookie per login);
 * `return_to` is never another site; failures answer 400/403/502/503 as an HTML page or
 * JSON (by Accept) and log only a reason, never a code, state, token or cookie value.
 */
import type { FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import formbody from '@fastify/formbody';
import * as client from 'openid-client';
import type Provider from 'oidc-provider';
import { z } from 'zod';
import type { Config } from '../../config/index.js';
import { GatewayError, renderError, toGatewayError } from '../../errors/index.js';
import { hashToken } from '../../security/tokens.js';
import { setSessionCookies } from '../cookies.js';
import { DEV_IDP_CLIENT_ID, DEV_IDP_PREFIX, createUauthLikeProvider, devIdpEnabled, devIdpRoutes } from '../dev-idp.js';
import { OidcClient } from './client.js';
import { LOGIN_STATE_TTL_MS, LoginStateStore } from './login-states.js';
import { resolveReturnTo } from './return-to.js';
import { oidcClientOptions, redirectUri } from './settings.js';

export interface OidcLoginOptions {
  config: Config;
}

const LOGIN_COOKIE_PREFIX = 'portcullis_login_';

const loginQuery = z.object({
  return_to: z.string().max(2048).optional(),
  login_hint: z.string().trim().max(255).optional(),
});

/** Authorization response parameters: single strings only (a repeated parameter is refused). */
const callbackParams = z.record(z.string().max(64), z.string().max(8192));

/**
 * PUBLIC_URL, or when it was derived from PORT=0, the address actually listened on
 * (known only once the server listens: discovery and the dev provider are lazy).
 */
export function publicBase(app: FastifyInstance, config: Config): string {
  if (!/:0$/.test(config.publicUrl)) return config.publicUrl;
  const address = app.server.address();
  return address && typeof address === 'object' ? config.publicUrl.replace(/:0$/, `:${address.port}`) : config.publicUrl;
}

function loginCookieName(state: string): string {
  return `${LOGIN_COOKIE_PREFIX}${hashToken(state).slice(0, 16)}`;
}

function escapeHtml(value: string): string {
  return value.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

function wantsHtml(request: FastifyRequest): boolean {
  const accept = request.headers.accept ?? '';
  return accept.includes('text/html');
}

function errorPage(status: number, message: string, code: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Sign-in failed</title></head><body><h1>Sign-in failed</h1><p>${escapeHtml(message)}</p><p><small>${escapeHtml(code)} (${status})</small></p><p><a href="/auth/login">Try again</a></p></body></html>`;
}

export const oidcLogin: FastifyPluginAsync<OidcLoginOptions> = async (app, { config }) => {
  const https = config.publicUrl.startsWith('https:');
  const store = new LoginStateStore(app.services.engine.database.db);
  const devIdp = devIdpEnabled(config);
  let current: { base: string; client: OidcClient | undefined } | undefined;
  let devProvider: { base: string; provider: Promise<Provider> } | undefined;

  /** The relying party for the current public URL (rebuilt only if it changes, i.e. after listen). */
  const oidc = (): OidcClient => {
    const base = publicBase(app, config);
    if (current?.base !== base) {
      const options = oidcClientOptions(config, base);
      current = { base, client: options ? new OidcClient(options) : undefined };
    }
    if (!current.client) {
      throw new GatewayError('unavailable', 'Sign-in is not configured: set UAUTH_CLIENT_ID (and UAUTH_CLIENT_SECRET) for uAuth', { reason: 'login_not_configured' });
    }
    return current.client;
  };

  if (devIdp) {
    app.log.warn(
      { issuer: `${config.publicUrl}${DEV_IDP_PREFIX}` },
      'DEVELOPMENT ONLY identity provider enabled at /dev-idp: ANYONE can sign in as ANY name. Set UAUTH_CLIENT_ID (or DEV_IDP=off) for real use; it is refused with NODE_ENV=production',
    );
    await app.register(devIdpRoutes, {
      provider: () => {
        const base = publicBase(app, config);
        if (devProvider?.base !== base) {
          const provider = createUauthLikeProvider({
            issuer: `${base}${DEV_IDP_PREFIX}`,
            clients: [{ clientId: DEV_IDP_CLIENT_ID, redirectUris: [redirectUri(config, base)] }],
          }).then((p) => {
            p.proxy = config.trustProxy;
            p.on('server_error', (_ctx: unknown, err: unknown) => app.log.error({ reason: (err as Error)?.name }, 'dev identity provider error'));
            return p;
          });
          devProvider = { base, provider };
        }
        return devProvider.provider;
      },
    });
  } else if (!config.uauthClientId) {
    app.log.warn('Sign-in is not configured (no UAUTH_CLIENT_ID, DEV_IDP off): /auth/login answers 503');
  }

  await app.register(async (auth) => {
    await auth.register(formbody, { bodyLimit: 64 * 1024 });

    auth.setErrorHandler((err, request, reply) => {
      const gateway = toGatewayError(err);
      const fields = { code: gateway.code, reason: gateway.reason, status: gateway.status };
      // Provider failures are mapped without their cause (which may hold tokens); only
      // unexpected internal errors are logged with theirs.
      if (gateway.code === 'internal') request.log.error({ ...fields, err: gateway.cause }, 'sign-in failed');
      else request.log.warn(fields, 'sign-in failed');
      const { status, body, headers } = renderError(gateway, request.id);
      reply.code(status).headers(headers).header('cache-control', 'no-store');
      if (wantsHtml(request)) return reply.type('text/html; charset=utf-8').send(errorPage(status, body.error.message, body.error.code ?? gateway.code));
      return reply.send(body);
    });

    auth.get('/auth/login', async (request, reply) => {
      const parsed = loginQuery.safeParse(request.query);
      if (!parsed.success) throw new GatewayError('invalid_request', 'return_to and login_hint must each be given at most once, as text', { reason: 'invalid_query' });
      const base = publicBase(app, config);
      const returnTo = resolveReturnTo(parsed.data.return_to, { publicUrl: base, allowedOrigins: config.allowedOrigins });
      if (returnTo === undefined) {
        throw new GatewayError('invalid_request', 'return_to must be a path on this gateway (starting with a single /) or a URL on PUBLIC_URL or an ALLOWED_ORIGINS origin', {
          reason: 'invalid_return_to',
        });
      }
      const rp = oidc();
      await rp.discover();
      const nonce = client.randomNonce();
      const codeVerifier = client.randomPKCECodeVerifier();
      const started = await store.create({ issuer: rp.issuer, nonce, codeVerifier, returnTo });
      const url = await rp.authorizationUrl({ state: started.state, nonce, codeVerifier, loginHint: parsed.data.login_hint || undefined });
      // form_post callbacks are cross-site POSTs: Lax cookies would not come back on them.
      reply.setCookie(loginCookieName(started.state), started.browserValue, {
        path: '/auth',
        httpOnly: true,
        secure: https,
        sameSite: https ? 'none' : 'lax',
        maxAge: Math.floor(LOGIN_STATE_TTL_MS / 1000),
      });
      return reply.header('cache-control', 'no-store').redirect(url.href, 302);
    });

    const callback = async (request: FastifyRequest, reply: FastifyReply) => {
      const raw = request.method === 'POST' ? request.body : request.query;
      const parsed = callbackParams.safeParse(raw ?? {});
      if (!parsed.success) throw new GatewayError('invalid_request', 'The callback parameters are malformed (each must appear once)', { reason: 'invalid_callback' });
      const p = parsed.data;
      if (p.error !== undefined) {
        const error = /^[\w.-]{1,64}$/.test(p.error) ? p.error : 'error';
        const description = p.error_description ? `: ${p.error_description.slice(0, 300)}` : '';
        throw new GatewayError('invalid_request', `The identity provider answered ${error}${description}`, { reason: error === 'access_denied' ? 'access_denied' : 'provider_error' });
      }
      if (!p.state) throw new GatewayError('invalid_request', 'The callback has no state: sign-in must start at /auth/login', { reason: 'state_missing' });
      if (!p.code) throw new GatewayError('invalid_request', 'The callback has no authorization code', { reason: 'code_missing' });
      const cookieName = loginCookieName(p.state);
      const login = await store.consume(p.state, request.cookies[cookieName]);
      reply.clearCookie(cookieName, { path: '/auth' });
      const rp = oidc();
      if (login.issuer !== rp.issuer) throw new GatewayError('invalid_request', 'This login was started with another identity provider', { reason: 'state_unknown' });
      const verified = await rp.exchange({ params: new URLSearchParams(p), state: p.state, nonce: login.nonce, codeVerifier: login.codeVerifier });
      const { identity } = verified;
      const user = await app.services.users.recordLogin({
        issuer: verified.issuer,
        subject: identity.sub,
        displayName: identity.name ?? identity.sub,
        email: identity.email ?? null,
        walletAddress: identity.wallet_address ?? null,
      });
      if (user.status === 'disabled') throw new GatewayError('permission_denied', 'This account is disabled; ask an administrator', { reason: 'user_disabled' });
      const tokens = await app.services.sessions.start(user.id, { ip: request.ip, userAgent: request.headers['user-agent'] ?? null, issuer: verified.issuer });
      setSessionCookies(reply, tokens, config);
      request.log.info({ user_id: user.id, issuer: verified.issuer, session_id: tokens.session.id }, 'signed in');
      return reply.header('cache-control', 'no-store').redirect(login.returnTo, 303);
    };
    auth.get('/auth/callback', callback);
    auth.post('/auth/callback', callback);
  });
};
