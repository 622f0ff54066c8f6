/**
 * Sign-in end to end: the gateway (listening on port 0) as the client of a separate,
 * real oidc-provider configured like uAuth, driven with plain fetch through the
 * provider's login and consent pages; then the mounted development provider; then every
 * way a callback can be wrong.
 */
import { Writable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { buildApp } from '../../src/app.js';
import { createUauthLikeProvider, devWalletAddress } from '../../src/auth/dev-idp.js';
import { hashToken } from '../../src/security/tokens.js';
import type { DatabaseContext } from '../helpers/env.js';
import { describeEachDatabase } from '../helpers/env.js';
import type { LateServer } from './oidc-helpers.js';
import { CookieJar, finishLogin, lateServer, loginAtProvider, reasonOf, send } from './oidc-helpers.js';

const CLIENT_ID = 'portcullis-test';
const CLIENT_SECRET = 'test-client-secret-0123456789';

interface Gateway {
  app: FastifyInstance;
  url: string;
  logs: string[];
}

async function startGateway(db: DatabaseContext, env: Record<string, string>): Promise<Gateway> {
  const logs: string[] = [];
  const logStream = new Writable({
    write(chunk, _enc, done) {
      logs.push(String(chunk));
      done();
    },
  });
  const engine = await db.engine(env);
  const app = await buildApp(db.config({ LOG_LEVEL: 'debug', ...env }), engine, { logStream });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const address = app.server.address() as { port: number };
  return { app, url: `http://127.0.0.1:${address.port}`, logs };
}

describeEachDatabase('OIDC sign-in against a uAuth-like provider', (db) => {
  let idp: LateServer;
  let gw: Gateway;

  beforeAll(async () => {
    idp = await lateServer();
    gw = await startGateway(db, {
      UAUTH_ISSUER: idp.url,
      UAUTH_CLIENT_ID: CLIENT_ID,
      UAUTH_CLIENT_SECRET: CLIENT_SECRET,
      DEV_IDP: 'off',
      ALLOWED_ORIGINS: 'http://app.test',
    });
    const provider = await createUauthLikeProvider({
      issuer: idp.url,
      clients: [{ clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, redirectUris: [`${gw.url}/auth/callback`] }],
    });
    idp.handle(provider.callback());
  });

  afterAll(async () => {
    await gw?.app.close();
    await idp?.close();
  });

  const stateOf = (callback: string) => new URL(callback).searchParams.get('state')!;
  const db_ = () => gw.app.services.engine.database.db;

  it('signs a person in: subject is the domain, wallet recorded, session cookie works', async () => {
    const jar = new CookieJar();
    const { callback, authorize } = await loginAtProvider(jar, gw.url, 'alice', '?return_to=%2Fchat%3Fx%3D1&login_hint=alice.crypto');
    expect(authorize.searchParams.get('code_challenge_method')).toBe('S256');
    expect(authorize.searchParams.get('scope')).toBe('openid wallet');
    expect(authorize.searchParams.get('login_hint')).toBe('alice.crypto');
    expect(authorize.searchParams.get('redirect_uri')).toBe(`${gw.url}/auth/callback`);
    expect(authorize.searchParams.get('nonce')).toBeTruthy();
    const done = await finishLogin(jar, callback);
    expect(done.status).toBe(303);
    expect(done.headers.get('location')).toBe('/chat?x=1');
    const me = await send(jar, `${gw.url}/auth/me`);
    expect(me.status).toBe(200);
    const body = (await me.json()) as Record<string, unknown>;
    expect(body).toMatchObject({ subject: 'alice.crypto', issuer: idp.url, wallet_address: devWalletAddress('alice.crypto'), credential: 'cookie' });
  });

  it('accepts the form_post response mode (POST callback)', async () => {
    const jar = new CookieJar();
    const { callback } = await loginAtProvider(jar, gw.url, 'formpost');
    const params = Object.fromEntries(new URL(callback).searchParams);
    const done = await send(jar, `${gw.url}/auth/callback`, { form: params });
    expect(done.status).toBe(303);
    expect((await (await send(jar, `${gw.url}/auth/me`)).json()) as object).toMatchObject({ subject: 'formpost.crypto' });
  });

  it('refuses a replayed state', async () => {
    const jar = new CookieJar();
    const { callback } = await loginAtProvider(jar, gw.url, 'replay');
    const cookies = jar.all(new URL(gw.url).origin);
    expect((await finishLogin(jar, callback)).status).toBe(303);
    const again = new CookieJar();
    for (const [k, v] of cookies) again.store(gw.url, new Response(null, { headers: { 'set-cookie': `${k}=${encodeURIComponent(v)}` } }));
    const replay = await finishLogin(again, callback);
    expect(replay.status).toBe(400);
    expect(await reasonOf(replay)).toBe('state_replayed');
  });

  it('refuses an unknown state and a callback without a login', async () => {
    const jar = new CookieJar();
    const unknown = await send(jar, `${gw.url}/auth/callback?code=abc&state=nothing-we-issued`);
    expect(unknown.status).toBe(400);
    expect(await reasonOf(unknown)).toBe('state_unknown');
    const bare = await send(jar, `${gw.url}/auth/callback`);
    expect(bare.status).toBe(400);
    expect(await reasonOf(bare)).toBe('state_missing');
  });

  it('refuses an expired state', async () => {
    const jar = new CookieJar();
    const { callback } = await loginAtProvider(jar, gw.url, 'slow');
    await db_().updateTable('login_states').set({ expires_at: Date.now() - 1 }).where('state_hash', '=', hashToken(stateOf(callback))).execute();
    const res = await finishLogin(jar, callback);
    expect(res.status).toBe(400);
    expect(await reasonOf(res)).toBe('state_expired');
  });

  it('refuses a callback from another browser (no login cookie)', async () => {
    const jar = new CookieJar();
    const { callback } = await loginAtProvider(jar, gw.url, 'csrf');
    const res = await finishLogin(new CookieJar(), callback);
    expect(res.status).toBe(400);
    expect(await reasonOf(res)).toBe('login_not_bound');
  });

  it('refuses a state row without PKCE verifier', async () => {
    const jar = new CookieJar();
    const { callback } = await loginAtProvider(jar, gw.url, 'nopkce');
    await db_().updateTable('login_states').set({ code_verifier: '' }).where('state_hash', '=', hashToken(stateOf(callback))).execute();
    const res = await finishLogin(jar, callback);
    expect(res.status).toBe(400);
    expect(await reasonOf(res)).toBe('pkce_verifier_missing');
  });

  it("refuses a code spliced into another login (the other login's PKCE verifier does not match)", async () => {
    const jar = new CookieJar();
    const a = await loginAtProvider(jar, gw.url, 'splice-a');
    const b = await loginAtProvider(jar, gw.url, 'splice-b');
    const spliced = new URL(a.callback);
    spliced.searchParams.set('code', new URL(b.callback).searchParams.get('code')!);
    const res = await finishLogin(jar, spliced.href);
    expect(res.status).toBe(400);
    expect(await reasonOf(res)).toBe('invalid_grant');
  });

  it('surfaces a reused authorization code as invalid_grant', async () => {
    const jar = new CookieJar();
    const { callback } = await loginAtProvider(jar, gw.url, 'reuse');
    const row = await db_().selectFrom('login_states').selectAll().where('state_hash', '=', hashToken(stateOf(callback))).executeTakeFirstOrThrow();
    expect((await finishLogin(jar, callback)).status).toBe(303);
    // A second, valid login state holding the same verifier and nonce: only the code is stale.
    const second = await loginAtProvider(jar, gw.url, 'reuse');
    await db_()
      .updateTable('login_states')
      .set({ code_verifier: row.code_verifier, nonce: row.nonce })
      .where('state_hash', '=', hashToken(stateOf(second.callback)))
      .execute();
    const replayed = new URL(second.callback);
    replayed.searchParams.set('code', new URL(callback).searchParams.get('code')!);
    const res = await finishLogin(jar, replayed.href);
    expect(res.status).toBe(400);
    expect(await reasonOf(res)).toBe('invalid_grant');
  });

  it('refuses an ID token whose nonce is not the login state nonce', async () => {
    const jar = new CookieJar();
    const { callback } = await loginAtProvider(jar, gw.url, 'nonce');
    await db_().updateTable('login_states').set({ nonce: 'not-the-nonce-sent' }).where('state_hash', '=', hashToken(stateOf(callback))).execute();
    const res = await finishLogin(jar, callback);
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe('id_token_invalid');
    expect(body.error.message).toMatch(/nonce/);
  });

  it('shows the provider error (escaped) for error=access_denied', async () => {
    const jar = new CookieJar();
    const json = await send(jar, `${gw.url}/auth/callback?error=access_denied&error_description=User%20said%20no&state=x`);
    expect(json.status).toBe(400);
    expect(await reasonOf(json)).toBe('access_denied');
    const html = await send(jar, `${gw.url}/auth/callback?error=access_denied&error_description=%3Cscript%3Ealert(1)%3C%2Fscript%3E`, { accept: 'text/html' });
    expect(html.status).toBe(400);
    expect(html.headers.get('content-type')).toMatch(/text\/html/);
    const page = await html.text();
    expect(page).not.toContain('<script>');
    expect(page).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
  });

  it('refuses open-redirect return_to values and allows local and allowed ones', async () => {
    const jar = new CookieJar();
    for (const bad of ['//evil.test', 'https://evil.test', '/\\evil', 'https://evil.test/x', '/\t/evil.test']) {
      const res = await send(jar, `${gw.url}/auth/login?return_to=${encodeURIComponent(bad)}`);
      expect(res.status, bad).toBe(400);
      expect(await reasonOf(res)).toBe('invalid_return_to');
    }
    for (const good of ['/x', 'http://app.test/after', `${gw.url}/y`]) {
      expect((await send(jar, `${gw.url}/auth/login?return_to=${encodeURIComponent(good)}`)).status, good).toBe(302);
    }
  });

  it('refuses a disabled user with 403', async () => {
    const user = await gw.app.services.users.create({ issuer: idp.url, subject: 'banned.crypto' });
    await gw.app.services.users.setStatus(user.id, 'disabled');
    const jar = new CookieJar();
    const { callback } = await loginAtProvider(jar, gw.url, 'banned');
    const res = await finishLogin(jar, callback, 'text/html');
    expect(res.status).toBe(403);
    expect(await res.text()).toContain('disabled');
    expect(jar.get(new URL(gw.url).origin, 'pcl_at')).toBeUndefined();
  });

  it('finishes on another instance sharing the database a login started on the first', async () => {
    // Instance B sits behind the same public callback URL (a load balancer's job).
    const other = await startGateway(db, {
      UAUTH_ISSUER: idp.url,
      UAUTH_CLIENT_ID: CLIENT_ID,
      UAUTH_CLIENT_SECRET: CLIENT_SECRET,
      UAUTH_REDIRECT_URI: `${gw.url}/auth/callback`,
      DEV_IDP: 'off',
    });
    try {
      const jar = new CookieJar();
      const { callback } = await loginAtProvider(jar, gw.url, 'roaming');
      const onB = callback.replace(gw.url, other.url);
      for (const [k, v] of jar.all(new URL(gw.url).origin)) {
        jar.store(other.url, new Response(null, { headers: { 'set-cookie': `${k}=${encodeURIComponent(v)}` } }));
      }
      const done = await finishLogin(jar, onB);
      expect(done.status).toBe(303);
      expect((await (await send(jar, `${other.url}/auth/me`)).json()) as object).toMatchObject({ subject: 'roaming.crypto' });
      // …and the state is now spent for instance A too.
      const replay = await finishLogin(jar, callback);
      expect(await reasonOf(replay)).toBe('state_replayed');
    } finally {
      await other.app.close();
    }
  });

  it('sends max_age when UAUTH_MAX_AGE is set and accepts the recent auth_time', async () => {
    const strict = await startGateway(db, {
      UAUTH_ISSUER: idp.url,
      UAUTH_CLIENT_ID: CLIENT_ID,
      UAUTH_CLIENT_SECRET: CLIENT_SECRET,
      UAUTH_REDIRECT_URI: `${gw.url}/auth/callback`,
      UAUTH_MAX_AGE: '300',
      DEV_IDP: 'off',
    });
    try {
      const jar = new CookieJar();
      const { callback, authorize } = await loginAtProvider(jar, strict.url, 'recent', '', gw.url);
      expect(authorize.searchParams.get('max_age')).toBe('300');
      expect(callback.startsWith(`${gw.url}/auth/callback`)).toBe(true);
      // The provider redirects to the registered callback (instance A's address); deliver it to the strict instance.
      const done = await finishLogin(jar, callback.replace(gw.url, strict.url));
      expect(done.status).toBe(303);
    } finally {
      await strict.app.close();
    }
  });

  it('writes no code, state, verifier, nonce, token or cookie value to the logs', async () => {
    const jar = new CookieJar();
    const { callback } = await loginAtProvider(jar, gw.url, 'logged', '?return_to=%2Fafter');
    const state = stateOf(callback);
    const row = await db_().selectFrom('login_states').selectAll().where('state_hash', '=', hashToken(state)).executeTakeFirstOrThrow();
    const gwOrigin = new URL(gw.url).origin;
    const loginCookies = [...jar.all(gwOrigin).values()];
    expect((await finishLogin(jar, callback)).status).toBe(303);
    expect((await send(jar, `${gw.url}/auth/me`)).status).toBe(200);
    const secrets = [
      new URL(callback).searchParams.get('code')!,
      state,
      row.code_verifier,
      row.nonce,
      ...loginCookies,
      ...jar.all(gwOrigin).values(),
    ];
    expect(secrets.length).toBeGreaterThanOrEqual(7);
    const logs = gw.logs.join('');
    expect(logs).toContain('signed in');
    for (const secret of secrets) expect(logs.includes(secret), `log leaks a value of length ${secret.length}`).toBe(false);
  });
});

describeEachDatabase('OIDC sign-in through the mounted development provider', (db) => {
  let gw: Gateway;
  beforeAll(async () => {
    gw = await startGateway(db, { DEV_IDP: 'auto' });
  });
  afterAll(async () => {
    await gw?.app.close();
  });

  it('announces itself and signs anyone in as <name>.crypto with a fake wallet', async () => {
    expect(gw.logs.join('')).toContain('DEVELOPMENT ONLY');
    const jar = new CookieJar();
    const { callback, authorize } = await loginAtProvider(jar, gw.url, 'Bob');
    expect(authorize.href.startsWith(`${gw.url}/dev-idp/oauth2/auth?`)).toBe(true);
    expect((await finishLogin(jar, callback)).status).toBe(303);
    const me = (await (await send(jar, `${gw.url}/auth/me`)).json()) as Record<string, unknown>;
    expect(me).toMatchObject({ subject: 'bob.crypto', issuer: `${gw.url}/dev-idp`, wallet_address: devWalletAddress('bob.crypto') });
  });
});
