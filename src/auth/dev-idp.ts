/**
 * DEVELOPMENT ONLY: a real OpenID Connect provider (oidc-provider 9) shaped like uAuth,
 * mounted on the gateway under `/dev-idp`, so sign-in works with no account anywhere.
 * Any name signs in: `alice` becomes the subject `alice.crypto` (a typed domain is kept),
 * with a fake wallet address derived from it. Refused when NODE_ENV=production.
 *
 * `createUauthLikeProvider` is also what tests use as a stand-in for uAuth: routes
 * `/oauth2/auth`, `/oauth2/token`, `/.well-known/jwks.json`, `/userinfo`; PKCE S256
 * required; the `wallet` scope's claims (`wallet_address`, `wallet_type_hint`) in the ID
 * token; RS256 keys generated in memory at start.
 */
import { createHash, generateKeyPairSync, randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import type Provider from 'oidc-provider';
import type { Config } from '../config/index.js';
import { ConfigError } from '../config/index.js';

export const DEV_IDP_PREFIX = '/dev-idp';
export const DEV_IDP_CLIENT_ID = 'portcullis-dev';

/**
 * Whether the development provider runs: DEV_IDP=on, or auto with no UAUTH_CLIENT_ID
 * outside production. Throws a ConfigError for DEV_IDP=on with NODE_ENV=production.
 */
export function devIdpEnabled(config: Config): boolean {
  if (config.devIdp === 'on' && config.nodeEnv === 'production') {
    throw new ConfigError('DEV_IDP=on is refused with NODE_ENV=production: the development identity provider lets anyone sign in as anyone');
  }
  if (config.devIdp === 'auto') return !config.uauthClientId && config.nodeEnv !== 'production';
  return config.devIdp === 'on';
}

/** `alice` → `alice.crypto`; `bob.x` stays `bob.x`. Lower-cased, trimmed, at most 253 characters. */
export function devDomain(name: string): string {
  const cleaned = name.trim().toLowerCase().replace(/[^a-z0-9.-]+/g, '-').replace(/^[.-]+|[.-]+$/g, '').slice(0, 240) || 'anonymous';
  return cleaned.includes('.') ? cleaned : `${cleaned}.crypto`;
}

/** A fake but stable Ethereum-style address for a domain (0x + 40 hex). */
export function devWalletAddress(domain: string): string {
  return `0x${createHash('sha256').update(`portcullis-dev-idp:${domain}`).digest('hex').slice(0, 40)}`;
}

export interface UauthLikeClient {
  clientId: string;
  redirectUris: string[];
  /** With a secret the client uses client_secret_basic (or `authMethod`); without, none. */
  clientSecret?: string;
  authMethod?: 'client_secret_basic' | 'client_secret_post' | 'none';
}

export interface UauthLikeProviderOptions {
  issuer: string;
  clients: UauthLikeClient[];
}

/** A uAuth-shaped oidc-provider instance (see the module comment). Imported lazily. */
export async function createUauthLikeProvider(options: UauthLikeProviderOptions): Promise<Provider> {
  const { default: ProviderClass } = await import('oidc-provider');
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = { ...privateKey.export({ format: 'jwk' }), kid: randomBytes(8).toString('hex'), alg: 'RS256', use: 'sig' };
  const provider = new ProviderClass(options.issuer, {
    clients: options.clients.map((c) => ({
      client_id: c.clientId,
      ...(c.clientSecret ? { client_secret: c.clientSecret } : {}),
      redirect_uris: c.redirectUris,
      token_endpoint_auth_method: c.authMethod ?? (c.clientSecret ? 'client_secret_basic' : 'none'),
      grant_types: ['authorization_code'],
      response_types: ['code'],
    })),
    jwks: { keys: [jwk] },
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    async findAccount(_ctx: unknown, id: string) {
      const domain = devDomain(id);
      return {
        accountId: domain,
        claims: () => ({ sub: domain, name: domain, wallet_address: devWalletAddress(domain), wallet_type_hint: 'web3' }),
      };
    },
    claims: { openid: ['sub'], wallet: ['wallet_address', 'wallet_type_hint'], profile: ['name'] },
    scopes: ['openid', 'wallet', 'profile', 'offline_access'],
    conformIdTokenClaims: false,
    pkce: { required: () => true },
    responseTypes: ['code'],
    routes: { authorization: '/oauth2/auth', token: '/oauth2/token', jwks: '/.well-known/jwks.json', userinfo: '/userinfo' },
    features: { devInteractions: { enabled: true } },
    // uAuth's lifetimes: ID and access tokens one hour.
    ttl: { AuthorizationCode: 60, IdToken: 3600, AccessToken: 3600, Interaction: 600, Session: 86_400, Grant: 86_400 },
  });
  // oidc-provider makes the session's account id the ID token's `sub`, and the built-in
  // login form records the name as typed: turn it into the domain before it is read.
  provider.use(async (ctx: DevLoginContext, next: () => Promise<void>) => {
    if (ctx.method === 'POST' && /^\/interaction\/[^/]+$/.test(ctx.path) && ctx.is('application/x-www-form-urlencoded')) {
      const chunks: Buffer[] = [];
      let size = 0;
      for await (const chunk of ctx.req as AsyncIterable<Buffer>) {
        size += chunk.length;
        if (size > 16 * 1024) ctx.throw(413, 'request entity too large');
        chunks.push(chunk);
      }
      const params = new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
      const login = params.get('login');
      if (params.get('prompt') === 'login' && login !== null) params.set('login', devDomain(login));
      (ctx.req as { body?: unknown }).body = Object.fromEntries(params);
    }
    await next();
  });
  return provider;
}

/** The part of Koa's context the login rewrite uses. */
interface DevLoginContext {
  method: string;
  path: string;
  req: IncomingMessage;
  is(type: string): string | false | null;
  throw(status: number, message: string): never;
}

export interface DevIdpRoutesOptions {
  /** The provider, built on first use (its issuer needs the listening address). */
  provider: () => Promise<Provider>;
}

/**
 * Mounts the provider under DEV_IDP_PREFIX. Fastify parses no body here (oidc-provider
 * reads the raw stream itself) and hands the raw request over, prefix stripped.
 */
export const devIdpRoutes: FastifyPluginAsync<DevIdpRoutesOptions> = async (app, options) => {
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_request, _payload, done) => done(null, undefined));
  const handlers = new WeakMap<Provider, ReturnType<Provider['callback']>>();
  const handler = async (request: FastifyRequest, reply: FastifyReply) => {
    const provider = await options.provider();
    const raw = request.raw as IncomingMessage & { originalUrl?: string };
    const url = raw.url ?? DEV_IDP_PREFIX;
    raw.originalUrl = url;
    raw.url = url.slice(DEV_IDP_PREFIX.length) || '/';
    let handle = handlers.get(provider);
    if (!handle) handlers.set(provider, (handle = provider.callback()));
    reply.hijack();
    handle(raw, reply.raw);
  };
  app.all(DEV_IDP_PREFIX, handler);
  app.all(`${DEV_IDP_PREFIX}/*`, handler);
};
