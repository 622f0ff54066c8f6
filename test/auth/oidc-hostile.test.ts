/**
 * The gateway facing a provider we script with jose: uAuth's real token shape (iss with a
 * trailing slash, array aud) must pass; forged, malformed or hostile answers must end in
 * a clear 400/502, never a crash, never a token in the logs.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Writable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import type { CryptoKey, JWK } from 'jose';
import { SignJWT, exportJWK, generateKeyPair } from 'jose';
import { afterAll, beforeAll, beforeEach, expect, it } from 'vitest';
import { buildApp } from '../../src/app.js';
import { describeEachDatabase } from '../helpers/env.js';
import type { LateServer } from './oidc-helpers.js';
import { CookieJar, lateServer, reasonOf, send } from './oidc-helpers.js';

const CLIENT_ID = 'hostile-client';
const CLIENT_SECRET = 'hostile-secret-value-42';
const ACCESS_TOKEN = 'opaque-access-token-never-logged';

interface TokenAnswer {
  status?: number;
  contentType?: string;
  body: string;
}

interface Script {
  discoveryFails: number;
  token: (ctx: { nonce: string; form: URLSearchParams; authorization: string | undefined }) => Promise<TokenAnswer>;
  lastTokenRequest?: { form: URLSearchParams; authorization: string | undefined };
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

describeEachDatabase('OIDC sign-in against a scripted (uAuth-shaped or hostile) provider', (db) => {
  let idp: LateServer;
  let gw: FastifyInstance;
  let gwUrl: string;
  const logs: string[] = [];
  let key: CryptoKey;
  let otherKey: CryptoKey;
  let publicJwk: JWK;
  const nonces = new Map<string, string>();
  const script: Script = { discoveryFails: 0, token: async () => ({ body: '{}' }) };

  const idToken = (claims: Record<string, unknown>, options: { signer?: CryptoKey; alg?: string } = {}) =>
    new SignJWT(claims).setProtectedHeader({ alg: options.alg ?? 'RS256', kid: 'k1' }).sign(options.signer ?? key);

  const uauthClaims = (nonce: string, extra: Record<string, unknown> = {}) => {
    const now = Math.floor(Date.now() / 1000);
    return {
      iss: `${idp.url}/`,
      aud: [CLIENT_ID],
      sub: 'charles-xavier.crypto',
      iat: now,
      exp: now + 3600,
      nonce,
      sid: 'sid-1',
      wallet_address: '0x8aaD44321A86b170879d7A244c1e8d360c99DdA8',
      wallet_type_hint: 'web3',
      eip4361_message: 'example.com wants you to sign in',
      domain_live: true,
      acr: 'sig',
      amr: ['swk'],
      ...extra,
    };
  };
  const tokenJson = async (idTokenValue: string) => ({ body: JSON.stringify({ access_token: ACCESS_TOKEN, token_type: 'bearer', expires_in: 3600, id_token: idTokenValue, scope: 'openid wallet' }) });

  beforeAll(async () => {
    const pair = await generateKeyPair('RS256');
    key = pair.privateKey;
    ({ privateKey: otherKey } = await generateKeyPair('RS256'));
    publicJwk = { ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' };
    idp = await lateServer();
    idp.handle((req: IncomingMessage, res: ServerResponse) => {
      void (async () => {
        const url = new URL(req.url ?? '/', idp.url);
        const json = (status: number, body: unknown) => res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
        if (url.pathname === '/.well-known/openid-configuration') {
          if (script.discoveryFails > 0) {
            script.discoveryFails -= 1;
            return res.writeHead(500).end('down');
          }
          // uAuth-like: discovery says the issuer without the slash its tokens carry.
          return json(200, {
            issuer: idp.url,
            authorization_endpoint: `${idp.url}/oauth2/auth`,
            token_endpoint: `${idp.url}/oauth2/token`,
            jwks_uri: `${idp.url}/.well-known/jwks.json`,
            userinfo_endpoint: `${idp.url}/userinfo`,
            response_types_supported: ['code'],
            subject_types_supported: ['public'],
            id_token_signing_alg_values_supported: ['RS256'],
            code_challenge_methods_supported: ['S256'],
            token_endpoint_auth_methods_supported: ['client_secret_post', 'client_secret_basic', 'none'],
          });
        }
        if (url.pathname === '/.well-known/jwks.json') return json(200, { keys: [publicJwk] });
        if (url.pathname === '/oauth2/token' && req.method === 'POST') {
          const form = new URLSearchParams(await readBody(req));
          const authorization = req.headers.authorization;
          script.lastTokenRequest = { form, authorization };
          const answer = await script.token({ nonce: nonces.get(form.get('code') ?? '') ?? '', form, authorization });
          return res.writeHead(answer.status ?? 200, { 'content-type': answer.contentType ?? 'application/json' }).end(answer.body);
        }
        return json(404, { error: 'not_found' });
      })();
    });
    const logStream = new Writable({
      write(chunk, _enc, done) {
        logs.push(String(chunk));
        done();
      },
    });
    const env = { UAUTH_ISSUER: idp.url, UAUTH_CLIENT_ID: CLIENT_ID, UAUTH_CLIENT_SECRET: CLIENT_SECRET, UAUTH_TOKEN_AUTH_METHOD: 'client_secret_post', DEV_IDP: 'off', LOG_LEVEL: 'debug' };
    gw = await buildApp(db.config(env), await db.engine(env), { logStream });
    await gw.listen({ port: 0, host: '127.0.0.1' });
    gwUrl = `http://127.0.0.1:${(gw.server.address() as { port: number }).port}`;
  });

  afterAll(async () => {
    await gw?.close();
    await idp?.close();
  });

  beforeEach(() => {
    script.discoveryFails = 0;
  });

  /** Starts a login and calls back with a fresh code, as a provider redirect would. */
  async function callback(accept = 'application/json'): Promise<Response> {
    const jar = new CookieJar();
    const start = await send(jar, `${gwUrl}/auth/login`);
    expect(start.status).toBe(302);
    const authorize = new URL(start.headers.get('location')!);
    const code = `code-${Math.random().toString(36).slice(2)}`;
    nonces.set(code, authorize.searchParams.get('nonce')!);
    return send(jar, `${gwUrl}/auth/callback?code=${code}&state=${encodeURIComponent(authorize.searchParams.get('state')!)}`, { accept });
  }

  it("accepts uAuth's token shape (iss with a trailing slash, array aud) and authenticates with client_secret_post", async () => {
    script.token = async ({ nonce }) => tokenJson(await idToken(uauthClaims(nonce)));
    const res = await callback();
    expect(res.status).toBe(303);
    expect(script.lastTokenRequest?.form.get('client_secret')).toBe(CLIENT_SECRET);
    expect(script.lastTokenRequest?.form.get('code_verifier')).toMatch(/^[\w-]{43,128}$/);
    expect(script.lastTokenRequest?.authorization).toBeUndefined();
    const user = await gw.services.users.resolve('charles-xavier.crypto', idp.url);
    expect(user.walletAddress).toBe('0x8aaD44321A86b170879d7A244c1e8d360c99DdA8');
  });

  it('refuses another issuer, another audience, a missing nonce, an expired token', async () => {
    for (const [extra, claim] of [
      [{ iss: 'https://evil.test/' }, /issuer/],
      [{ iss: `${idp.url}//` }, /issuer/],
      [{ aud: ['someone-else'] }, /audience/],
      [{ aud: [CLIENT_ID, 'someone-else'] }, /authorized party/],
      [{ nonce: undefined }, /nonce/],
      [{ exp: Math.floor(Date.now() / 1000) - 600 }, /expired/],
    ] as const) {
      script.token = async ({ nonce }) => tokenJson(await idToken(uauthClaims(nonce, extra)));
      const res = await callback();
      expect(res.status, JSON.stringify(extra)).toBe(400);
      const body = (await res.json()) as { error: { code: string; message: string } };
      expect(body.error.code).toBe('id_token_invalid');
      expect(body.error.message).toMatch(claim);
    }
  });

  it('refuses a token signed with another key, and unsigned or HMAC tokens', async () => {
    script.token = async ({ nonce }) => tokenJson(await idToken(uauthClaims(nonce), { signer: otherKey }));
    let res = await callback();
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { message: string } }).error.message).toMatch(/signature/);

    script.token = async ({ nonce }) => {
      const header = Buffer.from(JSON.stringify({ alg: 'none' })).toString('base64url');
      return tokenJson(`${header}.${Buffer.from(JSON.stringify(uauthClaims(nonce))).toString('base64url')}.`);
    };
    res = await callback();
    expect(res.status).toBe(400);
    expect(await reasonOf(res)).toBe('id_token_invalid');

    script.token = async ({ nonce }) => tokenJson(await new SignJWT(uauthClaims(nonce)).setProtectedHeader({ alg: 'HS256' }).sign(new TextEncoder().encode(CLIENT_SECRET)));
    res = await callback();
    expect(res.status).toBe(400);
    expect(await reasonOf(res)).toBe('id_token_invalid');
  });

  it('refuses claims of the wrong shape (empty sub, wallet not 0x-hex)', async () => {
    for (const extra of [{ sub: '' }, { sub: 42 }, { wallet_address: 'not-a-wallet' }]) {
      script.token = async ({ nonce }) => tokenJson(await idToken(uauthClaims(nonce, extra)));
      const res = await callback();
      expect(res.status, JSON.stringify(extra)).toBe(400);
      expect(await reasonOf(res)).toBe('id_token_invalid');
    }
  });

  it('answers 502 for a malformed token response, and an HTML page to browsers', async () => {
    script.token = async () => ({ body: `<html>${ACCESS_TOKEN}</html>`, contentType: 'text/html' });
    let res = await callback();
    expect(res.status).toBe(502);
    expect(await reasonOf(res)).toBe('provider_response_invalid');

    script.token = async () => ({ body: `{"access_token": ${JSON.stringify(ACCESS_TOKEN)}, "token_type": 5` });
    res = await callback('text/html');
    expect(res.status).toBe(502);
    expect(await res.text()).toMatch(/Sign-in failed/);

    script.token = async () => ({ body: JSON.stringify({ access_token: 5, token_type: 'bearer' }) });
    res = await callback();
    expect(res.status).toBe(502);

    script.token = async () => ({ body: JSON.stringify({ access_token: ACCESS_TOKEN, token_type: 'bearer' }) });
    res = await callback();
    expect(res.status).toBe(502);
    expect(await reasonOf(res)).toBe('id_token_missing');
  });

  it('maps token endpoint errors: invalid_grant 400, invalid_client 502', async () => {
    script.token = async () => ({ status: 400, body: JSON.stringify({ error: 'invalid_grant', error_description: 'code already used' }) });
    let res = await callback();
    expect(res.status).toBe(400);
    expect(await reasonOf(res)).toBe('invalid_grant');
    script.token = async () => ({ status: 401, body: JSON.stringify({ error: 'invalid_client' }) });
    res = await callback();
    expect(res.status).toBe(502);
    expect(await reasonOf(res)).toBe('token_request_refused');
  });

  it('never logs the tokens of any of these answers', () => {
    const text = logs.join('');
    expect(text).toContain('sign-in failed');
    expect(text).not.toContain(ACCESS_TOKEN);
    expect(text).not.toContain(CLIENT_SECRET);
    expect(text).not.toMatch(/eyJ[\w-]{10,}\.[\w-]{10,}/); // no JWT of any kind
  });
});

describeEachDatabase('OIDC discovery failures', (db) => {
  let idp: LateServer;
  let gw: FastifyInstance;
  let gwUrl: string;
  let fail = 1;

  beforeAll(async () => {
    idp = await lateServer();
    idp.handle((req, res) => {
      if (req.url === '/.well-known/openid-configuration' && fail-- <= 0) {
        res.writeHead(200, { 'content-type': 'application/json' }).end(
          JSON.stringify({ issuer: idp.url, authorization_endpoint: `${idp.url}/auth`, token_endpoint: `${idp.url}/token`, jwks_uri: `${idp.url}/jwks`, response_types_supported: ['code'] }),
        );
      } else res.writeHead(500).end('{not json');
    });
    const env = { UAUTH_ISSUER: idp.url, UAUTH_CLIENT_ID: CLIENT_ID, DEV_IDP: 'off' };
    gw = await buildApp(db.config(env), await db.engine(env));
    await gw.listen({ port: 0, host: '127.0.0.1' });
    gwUrl = `http://127.0.0.1:${(gw.server.address() as { port: number }).port}`;
  });
  afterAll(async () => {
    await gw?.close();
    await idp?.close();
  });

  it('answers 502 while the provider is down and discovers again once it is back', async () => {
    const jar = new CookieJar();
    const down = await send(jar, `${gwUrl}/auth/login`);
    expect(down.status).toBe(502);
    expect(await reasonOf(down)).toBe('provider_unreachable');
    const up = await send(jar, `${gwUrl}/auth/login`);
    expect(up.status).toBe(302);
    expect(up.headers.get('location')).toMatch(new RegExp(`^${idp.url}/auth\\?`));
  });
});
