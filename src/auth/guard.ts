/**
 * Fastify glue for authentication: `app.requireAuth` (a preHandler that sets
 * `request.auth`, applying the CSRF/Origin checks to cookie-authenticated state changes)
 * and `app.requireCapability(cap)` for admin routes. Installed on the root instance by
 * buildApp, so every plugin sees them.
 */
import type { FastifyInstance, FastifyRequest, preHandlerAsyncHookHandler } from 'fastify';
import type { Config } from '../config/index.js';
import type { AuthContext, AuthInput, Authenticate } from './authenticate.js';
import { checkCsrf, isStateChanging } from './cookies.js';
import type { Capability } from './permissions.js';
import { requireCapability } from './permissions.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by `app.requireAuth`; null on routes that do not require it. */
    auth: AuthContext | null;
  }
  interface FastifyInstance {
    requireAuth: preHandlerAsyncHookHandler;
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

/** Authenticates a request, applying CSRF checks when a cookie authenticated a state change. */
export async function authenticateRequest(
  request: FastifyRequest,
  authenticate: Authenticate,
  config: Pick<Config, 'publicUrl' | 'allowedOrigins'>,
): Promise<AuthContext> {
  if (request.auth) return request.auth;
  const auth = await authenticate(authInput(request));
  if (auth.credential === 'cookie' && isStateChanging(request.method)) checkCsrf(request, config);
  request.auth = auth;
  return auth;
}

export function installAuthGuards(app: FastifyInstance, authenticate: Authenticate, config: Pick<Config, 'publicUrl' | 'allowedOrigins'>): void {
  app.decorateRequest('auth', null);
  const requireAuth: preHandlerAsyncHookHandler = async (request) => {
    await authenticateRequest(request, authenticate, config);
  };
  app.decorate('requireAuth', requireAuth);
  app.decorate('requireCapability', (capability: Capability): preHandlerAsyncHookHandler => async (request) => {
    const auth = await authenticateRequest(request, authenticate, config);
    requireCapability(auth.permissions, capability);
  });
}
