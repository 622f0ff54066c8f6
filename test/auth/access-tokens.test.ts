import { createHmac, generateKeyPairSync, randomUUID } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { SignJWT } from 'jose';
import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import type { IssuedTokens } from '../../src/auth/sessions.js';
import { describeEachDatabase } from '../helpers/env.js';
import { PUBLIC_URL, authApp, bearer, makeUser, reason } from './helpers.js';

const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');

describeEachDatabase('access token verification', (db) => {
  let app: FastifyInstance;
  let tokens: IssuedTokens;
  beforeAll(async () => {
    app = await authApp(db);
    const user = await makeUser(app);
    tokens = await app.services.sessions.start(user.id, { ip: '127.0.0.1', userAgent: null, issuer: 'https://idp.test' });
  });
  afterAll(async () => {
    await app.close();
  });

  /** A token signed with the real current key, with `overrides` applied to the good claims. */
  async function forge(overrides: Record<string, unknown> = {}, header: Record<string, unknown> = {}): Promise<string> {
    const key = await app.services.signingKeys.current();
    const now = Math.floor(Date.now() / 1000);
    const claims = {
      sub: tokens.session.userId,
      sid: tokens.session.id,
      roles: ['member'],
      scope: '',
      iss: PUBLIC_URL,
      aud: 'portcullis',
      iat: now,
      exp: now + 600,
      jti: randomUUID(),
      ...overrides,
    };
    return new SignJWT(claims).setProtectedHeader({ alg: 'EdDSA', kid: key.kid, typ: 'at+jwt', ...header }).sign(key.privateKey);
  }

  /** Good claims signed by a fresh key that is not ours, its header naming `kid`. */
  async function signedByStrayKey(kid: string): Promise<string> {
    const { privateKey } = generateKeyPairSync('ed25519');
    const now = Math.floor(Date.now() / 1000);
    return new SignJWT({ sid: tokens.session.id, roles: [], scope: '', jti: 'x' })
      .setProtectedHeader({ alg: 'EdDSA', kid, typ: 'at+jwt' })
      .setSubject(tokens.session.userId)
      .setIssuer(PUBLIC_URL)
      .setAudience('portcullis')
      .setIssuedAt(now)
      .setExpirationTime(now + 60)
      .sign(privateKey);
  }

  async function me(token: string) {
    return app.inject({ method: 'GET', url: '/auth/me', headers: bearer(token) });
  }

  it('accepts a well-formed token signed with the current key (the baseline of every case below)', async () => {
    expect((await me(await forge())).statusCode).toBe(200);
    expect((await me(tokens.accessToken)).statusCode).toBe(200);
  });

  it('checks a token\'s signature once a second at most per instance: repeated use within the second is served from memory', async () => {
    const token = await forge();
    const lookups = vi.spyOn(app.services.signingKeys, 'verificationKey');
    try {
      expect((await me(token)).statusCode).toBe(200);
      const first = lookups.mock.calls.length;
      expect(first).toBeGreaterThan(0);
      for (let i = 0; i < 3; i++) expect((await me(token)).statusCode).toBe(200);
      expect(lookups.mock.calls.length).toBe(first); // no verification: the signature was checked moments ago
      await new Promise((resolve) => setTimeout(resolve, 1_050));
      expect((await me(token)).statusCode).toBe(200);
      expect(lookups.mock.calls.length).toBeGreaterThan(first); // checked again after the second
    } finally {
      lookups.mockRestore();
    }
  });

  it('refuses a tampered payload: token_invalid_signature', async () => {
    const [h, , s] = tokens.accessToken.split('.');
    const payload = JSON.parse(Buffer.from(tokens.accessToken.split('.')[1]!, 'base64url').toString()) as Record<string, unknown>;
    const res = await me(`${h}.${b64({ ...payload, roles: ['admin'], scope: 'manage_users' })}.${s}`);
    expect(res.statusCode).toBe(401);
    expect(reason(res)).toBe('token_invalid_signature');
  });

  it('refuses a token signed by another key that claims our kid: token_invalid_signature', async () => {
    const key = await app.services.signingKeys.current();
    expect(reason(await me(await signedByStrayKey(key.kid)))).toBe('token_invalid_signature');
  });

  it('refuses an expired token: token_expired', async () => {
    const now = Math.floor(Date.now() / 1000);
    const res = await me(await forge({ iat: now - 3600, exp: now - 600 }));
    expect(res.statusCode).toBe(401);
    expect(reason(res)).toBe('token_expired');
  });

  it('refuses a token not valid yet (nbf in the future): token_not_yet_valid', async () => {
    const res = await me(await forge({ nbf: Math.floor(Date.now() / 1000) + 600 }));
    expect(reason(res)).toBe('token_not_yet_valid');
  });

  it('refuses a token from another issuer: token_wrong_issuer', async () => {
    expect(reason(await me(await forge({ iss: 'http://127.0.0.1:9999' })))).toBe('token_wrong_issuer');
  });

  it('refuses a token for another audience: token_wrong_audience', async () => {
    expect(reason(await me(await forge({ aud: 'someone-else' })))).toBe('token_wrong_audience');
  });

  it('refuses alg none: token_alg_not_allowed', async () => {
    const key = await app.services.signingKeys.current();
    const payload = tokens.accessToken.split('.')[1];
    const res = await me(`${b64({ alg: 'none', kid: key.kid, typ: 'at+jwt' })}.${payload}.`);
    expect(res.statusCode).toBe(401);
    expect(reason(res)).toBe('token_alg_not_allowed');
  });

  it('refuses HS256 signed with the public key bytes (key confusion): token_alg_not_allowed', async () => {
    const key = await app.services.signingKeys.current();
    const jwk = (await app.services.signingKeys.jwks()).keys.find((k) => k.kid === key.kid)!;
    const payload = tokens.accessToken.split('.')[1];
    for (const secret of [Buffer.from(jwk.x!, 'base64url'), Buffer.from(JSON.stringify(jwk))]) {
      const head = b64({ alg: 'HS256', kid: key.kid, typ: 'at+jwt' });
      const sig = createHmac('sha256', secret).update(`${head}.${payload}`).digest('base64url');
      expect(reason(await me(`${head}.${payload}.${sig}`))).toBe('token_alg_not_allowed');
    }
  });

  it('refuses an unknown kid and a missing kid: token_unknown_kid', async () => {
    expect(reason(await me(await signedByStrayKey('sk_unknown')))).toBe('token_unknown_kid');
    expect(reason(await me(await forge({}, { kid: undefined })))).toBe('token_unknown_kid');
  });

  it('refuses garbage, a wrong typ and missing claims: token_malformed', async () => {
    expect(reason(await me('abc.def.ghi'))).toBe('token_malformed');
    expect(reason(await me('not-a-token'))).toBe('token_malformed');
    expect(reason(await me(await forge({}, { typ: 'JWT' })))).toBe('token_malformed');
    expect(reason(await me(await forge({ sid: undefined })))).toBe('token_malformed');
    const res = await app.inject({ method: 'GET', url: '/auth/me', headers: { authorization: 'Basic abc' } });
    expect(reason(res)).toBe('token_malformed');
  });

  it('answers missing_credentials in Anthropic error shape when nothing is sent', async () => {
    const res = await app.inject({ method: 'GET', url: '/auth/me' });
    expect(res.statusCode).toBe(401);
    expect(res.json()).toMatchObject({ type: 'error', error: { type: 'authentication_error', code: 'missing_credentials' } });
  });

  it('keeps verifying old tokens after a rotation, publishes both keys, and drops a retired key', async () => {
    const before = await app.services.signingKeys.current();
    const old = tokens.accessToken;
    await app.services.signingKeys.rotate();
    const after = await app.services.signingKeys.current();
    expect(after.kid).not.toBe(before.kid);
    const jwks = await app.inject({ method: 'GET', url: '/.well-known/jwks.json' });
    const kids = (jwks.json() as { keys: { kid: string; alg: string; d?: string }[] }).keys;
    expect(kids.map((k) => k.kid)).toEqual(expect.arrayContaining([before.kid, after.kid]));
    expect(kids.every((k) => k.d === undefined && k.alg === 'EdDSA')).toBe(true);
    expect((await me(old)).statusCode).toBe(200);
    const fresh = await app.services.sessions.refresh(tokens.refreshToken, { ip: '127.0.0.1', userAgent: null });
    expect(JSON.parse(Buffer.from(fresh.accessToken.split('.')[0]!, 'base64url').toString()).kid).toBe(after.kid);
    tokens = fresh;

    await app.services.signingKeys.retire(before.kid);
    expect(reason(await me(old))).toBe('token_unknown_kid');
    const left = (await app.services.signingKeys.jwks()).keys.map((k) => k.kid);
    expect(left).not.toContain(before.kid);
  });
});

describeEachDatabase('signing keys on one database shared by two instances', (db) => {
  // Several instances on one SQLite file is not a supported deployment (and two connections in
  // one thread deadlock on its write lock), so this runs on PostgreSQL only.
  it.runIf(db.name === 'postgres')('two instances starting at once both sign tokens the other accepts', async () => {
    // Migrations run one after the other (not this suite's concern); key creation races.
    const a = await authApp(db);
    const b = await authApp(db);
    try {
      const user = await makeUser(a);
      const meta = { ip: '127.0.0.1', userAgent: null, issuer: 'https://idp.test' };
      const [ta, tb] = await Promise.all([a.services.sessions.start(user.id, meta), b.services.sessions.start(user.id, meta)]);
      expect((await b.inject({ method: 'GET', url: '/auth/me', headers: bearer(ta.accessToken) })).statusCode).toBe(200);
      expect((await a.inject({ method: 'GET', url: '/auth/me', headers: bearer(tb.accessToken) })).statusCode).toBe(200);
      // A rotation on one is accepted by the other at once (unknown kid: looked up in the database).
      await a.services.signingKeys.rotate();
      const tc = await a.services.sessions.start(user.id, meta);
      expect((await b.inject({ method: 'GET', url: '/auth/me', headers: bearer(tc.accessToken) })).statusCode).toBe(200);
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });
});
