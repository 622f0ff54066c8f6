import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { narrowPermissions } from '../../src/auth/personal-tokens.js';
import type { Permissions } from '../../src/auth/permissions.js';
import { describeEachDatabase } from '../helpers/env.js';
import { authApp, bearer, makeUser, reason } from './helpers.js';

const meta = { ip: '127.0.0.1', userAgent: null, issuer: 'https://idp.test' };

it('narrowing never widens the user models', () => {
  const p: Permissions = { roles: ['member'], models: ['claude-*'], capabilities: [], maxOutputTokens: null, rateTier: 'default' };
  expect(narrowPermissions(p, null).models).toEqual(['claude-*']);
  expect(narrowPermissions(p, ['claude-haiku-*']).models).toEqual(['claude-haiku-*']);
  expect(narrowPermissions(p, ['*']).models).toEqual(['claude-*']);
  expect(narrowPermissions(p, ['gpt-*']).models).toEqual([]);
  expect(narrowPermissions({ ...p, models: ['claude-sonnet-4', 'claude-opus-4'] }, ['claude-sonnet-*']).models).toEqual(['claude-sonnet-4']);
});

describeEachDatabase('personal access tokens', (db) => {
  let app: FastifyInstance;
  beforeAll(async () => {
    app = await authApp(db);
  });
  afterAll(async () => {
    await app.close();
  });

  async function create(access: string, body: Record<string, unknown>) {
    const res = await app.inject({ method: 'POST', url: '/auth/tokens', headers: bearer(access), payload: body });
    return { res, body: res.json() as { id: string; token: string; models: string[] | null; expires_at: number | null } };
  }

  it('works as Bearer and as x-api-key, narrowed to its models, and records last use', async () => {
    const user = await makeUser(app);
    const session = await app.services.sessions.start(user.id, meta);
    const { res, body } = await create(session.accessToken, { name: 'laptop', models: ['claude-haiku-*'] });
    expect(res.statusCode).toBe(201);
    expect(body.token.startsWith('pcl_pat_')).toBe(true);
    // Nothing cached before the token's first use; an access token is never served from `cached`.
    const { authenticate } = app.services;
    expect(authenticate.cached({ apiKey: body.token })).toBeUndefined();
    expect(authenticate.cached({ authorization: `Bearer ${session.accessToken}` })).toBeUndefined();
    for (const headers of [bearer(body.token), { 'x-api-key': body.token }]) {
      const me = await app.inject({ method: 'GET', url: '/auth/me', headers });
      expect(me.statusCode).toBe(200);
      expect(me.json()).toMatchObject({ id: user.id, credential: 'personal_token', personal_token_id: body.id, session_id: null, permissions: { models: ['claude-haiku-*'] } });
    }
    // Verified moments ago: the same context without I/O, as authenticate gives it.
    expect(authenticate.cached({ apiKey: body.token })).toEqual(await authenticate({ apiKey: body.token }));
    expect(authenticate.cached({ apiKey: body.token })).toMatchObject({ personalTokenId: body.id, permissions: { models: ['claude-haiku-*'] } });
    const list = await app.inject({ method: 'GET', url: '/auth/tokens', headers: bearer(session.accessToken) });
    const listed = (list.json() as { data: Record<string, unknown>[] }).data;
    expect(listed).toHaveLength(1);
    expect(listed[0]).toMatchObject({ id: body.id, name: 'laptop' });
    expect(listed[0]!.last_used_at).toEqual(expect.any(Number));
    expect(JSON.stringify(listed)).not.toContain(body.token);
  });

  it('verify gives the request that checked the token the same frozen record as those trusting it after', async () => {
    const user = await makeUser(app);
    const { token } = await app.services.personalTokens.create(user.id, { name: 'ci' });
    const first = await app.services.personalTokens.verify(token);
    expect(Object.isFrozen(first)).toBe(true);
    expect(await app.services.personalTokens.verify(token)).toBe(first);
    expect(first).toMatchObject({ userId: user.id, name: 'ci', lastUsedAt: expect.any(Number) });
  });

  it('is refused once revoked (token_revoked) or expired (token_expired); unknown ones too', async () => {
    const user = await makeUser(app);
    const session = await app.services.sessions.start(user.id, meta);
    const a = (await create(session.accessToken, { name: 'a' })).body;
    const b = (await create(session.accessToken, { name: 'b', expires_in: '1h' })).body;
    expect(b.expires_at).toBeGreaterThan(Date.now());
    // Used (so trusted for VERIFIED_CACHE_MS), then revoked: refused at once on this instance.
    expect((await app.inject({ method: 'GET', url: '/auth/me', headers: bearer(a.token) })).statusCode).toBe(200);
    const del = await app.inject({ method: 'DELETE', url: `/auth/tokens/${a.id}`, headers: bearer(session.accessToken) });
    expect(del.statusCode).toBe(204);
    expect(reason(await app.inject({ method: 'GET', url: '/auth/me', headers: bearer(a.token) }))).toBe('token_revoked');
    expect((await app.inject({ method: 'GET', url: '/auth/me', headers: bearer(b.token) })).statusCode).toBe(200);
    // Expiry is forced in the database, behind the service's back, so on a token this instance
    // has not verified (and cached, VERIFIED_CACHE_MS) yet; a real expiry is checked on every use.
    const c = (await create(session.accessToken, { name: 'c', expires_in: '1h' })).body;
    await app.services.engine.database.db.updateTable('personal_tokens').set({ expires_at: Date.now() - 1000 }).where('id', '=', c.id).execute();
    expect(reason(await app.inject({ method: 'GET', url: '/auth/me', headers: { 'x-api-key': c.token } }))).toBe('token_expired');
    expect(reason(await app.inject({ method: 'GET', url: '/auth/me', headers: bearer('pcl_pat_unknown') }))).toBe('token_unknown');
  });

  it('refuses a disabled user token, another user revoking it, and a token minting tokens', async () => {
    const user = await makeUser(app);
    const other = await makeUser(app);
    const session = await app.services.sessions.start(user.id, meta);
    const otherSession = await app.services.sessions.start(other.id, meta);
    const t = (await create(session.accessToken, { name: 't' })).body;
    const foreign = await app.inject({ method: 'DELETE', url: `/auth/tokens/${t.id}`, headers: bearer(otherSession.accessToken) });
    expect(foreign.statusCode).toBe(404);
    const mint = await app.inject({ method: 'POST', url: '/auth/tokens', headers: bearer(t.token), payload: { name: 'wider' } });
    expect(mint.statusCode).toBe(403);
    const bad = await create(session.accessToken, { name: '', models: ['bad glob!'] });
    expect(bad.res.statusCode).toBe(400);
    // disableUser drops this instance's cached view at once (other instances: USER_CACHE_MS).
    await app.services.sessions.disableUser(user.id);
    expect(app.services.authenticate.cached({ authorization: `Bearer ${t.token}` })).toBeUndefined();
    expect(reason(await app.inject({ method: 'GET', url: '/auth/me', headers: bearer(t.token) }))).toBe('user_disabled');
  });

  it('an admin creates, lists and revokes tokens for another user; a member may not, nor a personal token', async () => {
    const admin = await makeUser(app, ['admin']);
    const member = await makeUser(app);
    const adminSession = await app.services.sessions.start(admin.id, meta);
    const memberSession = await app.services.sessions.start(member.id, meta);
    const denied = await app.inject({ method: 'POST', url: `/admin/users/${admin.id}/tokens`, headers: bearer(memberSession.accessToken), payload: { name: 'x' } });
    expect(denied.statusCode).toBe(403);
    // A narrowed admin token must not mint a wider one through the admin route either.
    const narrowed = await app.services.personalTokens.create(admin.id, { name: 'narrow', models: ['claude-haiku-*'] });
    const minted = await app.inject({ method: 'POST', url: `/admin/users/${admin.id}/tokens`, headers: bearer(narrowed.token), payload: { name: 'wider' } });
    expect([minted.statusCode, reason(minted)]).toEqual([403, 'personal_token_not_allowed']);
    const made = await app.inject({ method: 'POST', url: `/admin/users/${member.id}/tokens`, headers: bearer(adminSession.accessToken), payload: { name: 'ci' } });
    expect(made.statusCode).toBe(201);
    const token = made.json() as { id: string; token: string; user_id: string };
    expect(token.user_id).toBe(member.id);
    const me = await app.inject({ method: 'GET', url: '/auth/me', headers: bearer(token.token) });
    expect((me.json() as { id: string }).id).toBe(member.id);
    const list = await app.inject({ method: 'GET', url: `/admin/users/${member.subject}/tokens`, headers: bearer(adminSession.accessToken) });
    expect((list.json() as { data: { id: string }[] }).data.map((d) => d.id)).toEqual([token.id]);
    const del = await app.inject({ method: 'DELETE', url: `/admin/users/${member.id}/tokens/${token.id}`, headers: bearer(adminSession.accessToken) });
    expect(del.statusCode).toBe(204);
    expect(reason(await app.inject({ method: 'GET', url: '/auth/me', headers: bearer(token.token) }))).toBe('token_revoked');
  });
});
