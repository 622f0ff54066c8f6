/**
 * Fastify glue for authentication: `app.requireAuth` (a preHandler that sets
 * `request.auth`, applying the CSRF/Origin checks to cookie-authenticated state changes)
 * and `app.requireCapability(cap)` for admin routes. Installed on the root instance by
 * buildApp, so every plugin sees them.
 */
import type { FastifyInstance, FastifyRequest, preHandlerAsyncHookHandler, preHandlerHookHandler } from 'fastify';
import type { Config } from '../config/index.js';
import type { AuthContext, AuthInput, Authenticate } from './authenticate.js';
import { checkCsrf, isStateChanging } from './cookies.js';
import type { Capability } from './permissions.js';
import { requireCapability } from './permissions.js';
import type { RateLimiter } from '../ratelimit/limiter.js';
import { authenticateWithinFailureLimit } from '../ratelimit/auth-failures.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by `app.requireAuth`; null on routes that do not require it. */
    auth: AuthContext | null;
  }
  interface FastifyInstance {
    requireAuth: preHandlerHookHandler;
    requireCapability(capability: Capability): preHandlerAsyncHookHandler;
  }
}

/** The credentials of a request, as `authenticate` takes them. */
export function authInput(request: Pick<FastifyRequest, 'headers' | 'cookies'>): AuthInput {
  const header = (name: string) => {
    const v = request.headers[name];
    return typeof v === 'string' ? v : undefined;
  };
  return { authorization: header('authorization'), apiKey: header('x-api-key'), cookies: request.cookies ?? {} };
}

/** What the guard needs: the one authenticate function, the limiter and the CSRF settings. */
export interface AuthGuardDeps {
  authenticate: Authenticate;
  /** Counts failed authentications per client IP (brute-force protection). */
  limiter: RateLimiter;
  config: Pick<Config, 'publicUrl' | 'allowedOrigins'>;
}

/**
 * Authenticates a request once (the result is kept on `request.auth`): refused with a 429
 * when the client IP is over RATE_LIMIT_AUTH_FAILURES_PER_MIN, a failed credential counts
 * against that IP (see authenticateWithinFailureLimit), and a cookie-authenticated state
 * change must pass the CSRF/Origin checks.
 */
export async function authenticateRequest(request: FastifyRequest, deps: AuthGuardDeps, input = authInput(request)): Promise<AuthContext> {
  if (request.auth) return request.auth;
  const auth = await authenticateWithinFailureLimit({ limiter: deps.limiter, authenticate: deps.authenticate, ip: request.ip, input });
  if (auth.credential === 'cookie' && isStateChanging(request.method)) checkCsrf(request, deps.config);
  request.auth = auth;
  return auth;
}

export function installAuthGuards(app: FastifyInstance, deps: AuthGuardDeps): void {
  app.decorateRequest('auth', null);
  // Callback style, with no promise when the credential is cached (Authenticate.cached: a
  // personal token verified moments ago, a recently verified token also skips the failure
  // lockout there). Cookies always take authenticateRequest (its CSRF checks).
  const requireAuth: preHandlerHookHandler = (request, _reply, done) => {
    const input = authInput(request);
    const cached = request.auth ?? deps.authenticate.cached(input);
    if (cached) {
      request.auth = cached;
      return done();
    }
    authenticateRequest(request, deps, input).then(() => done(), (err: unknown) => done(err as Error));
  };
  app.decorate('requireAuth', requireAuth);
  app.decorate('requireCapability', (capability: Capability): preHandlerAsyncHookHandler => async (request) => {
    const auth = await authenticateRequest(request, deps);
    requireCapability(auth.permissions, capability);
  });
}
