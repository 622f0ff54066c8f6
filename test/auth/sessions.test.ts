import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { describeEachDatabase } from '../helpers/env.js';
import { authApp, bearer, makeUser, reason } from './helpers.js';

describeEachDatabase('sessions and refresh tokens', (db) => {
  let app: FastifyInstance;
  beforeAll(async () => {
    app = await authApp(db);
  });
  afterAll(async () => {
    await app.close();
  });
  const meta = { ip: '127.0.0.1', userAgent: 'vitest', issuer: 'https://idp.test' };

  it('starts a session whose access token authenticates /auth/me', async () => {
    const user = await makeUser(app);
    const tokens = await app.services.sessions.start(user.id, meta);
    expect(tokens.refreshToken.startsWith('pcl_rt_')).toBe(true);
    expect(tokens.expiresIn).toBeGreaterThan(800);
    const res = await app.inject({ method: 'GET', url: '/auth/me', headers: bearer(tokens.accessToken) });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ id: user.id, subject: user.subject, roles: ['member'], session_id: tokens.session.id, credential: 'access_token' });
  });

  it('rotates the refresh token on every use and revokes the session when a used one comes back', async () => {
    const user = await makeUser(app);
    const first = await app.services.sessions.start(user.id, meta);
    const r1 = await app.inject({ method: 'POST', url: '/auth/refresh', payload: { refresh_token: first.refreshToken } });
    expect(r1.statusCode).toBe(200);
    const body = r1.json() as { access_token: string; refresh_token: string; token_type: string; expires_in: number };
    expect(body.token_type).toBe('Bearer');
    expect(body.refresh_token).not.toBe(first.refreshToken);
    expect((await app.inject({ method: 'GET', url: '/auth/me', headers: bearer(body.access_token) })).statusCode).toBe(200);

    const replay = await app.inject({ method: 'POST', url: '/auth/refresh', payload: { refresh_token: first.refreshToken } });
    expect(replay.statusCode).toBe(401);
    expect(reason(replay)).toBe('refresh_token_reused');
    const session = await app.services.sessions.get(first.session.id);
    expect(session?.revokedReason).toBe('refresh_token_reuse');
    // The whole family is dead: the newest refresh token and the access token too.
    const next = await app.inject({ method: 'POST', url: '/auth/refresh', payload: { refresh_token: body.refresh_token } });
    expect(reason(next)).toBe('session_revoked');
    const me = await app.inject({ method: 'GET', url: '/auth/me', headers: bearer(body.access_token) });
    expect(reason(me)).toBe('session_revoked');
  });

  it('of two concurrent refreshes with one token exactly one wins; the other counts as reuse (no grace window)', async () => {
    const user = await makeUser(app);
    const tokens = await app.services.sessions.start(user.id, meta);
    const results = await Promise.allSettled([0, 1].map(() => app.services.sessions.refresh(tokens.refreshToken, meta)));
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    const lost = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
    expect(lost.reason).toMatchObject({ reason: 'refresh_token_reused' });
    expect((await app.services.sessions.get(tokens.session.id))?.revokedReason).toBe('refresh_token_reuse');
  });

  it('refuses an unknown refresh token', async () => {
    const res = await app.inject({ method: 'POST', url: '/auth/refresh', payload: { refresh_token: 'pcl_rt_nope' } });
    expect(res.statusCode).toBe(401);
    expect(reason(res)).toBe('refresh_token_invalid');
  });

  it('logout revokes the session: its access token is refused afterwards', async () => {
    const user = await makeUser(app);
    const tokens = await app.services.sessions.start(user.id, meta);
    const out = await app.inject({ method: 'POST', url: '/auth/logout', headers: bearer(tokens.accessToken) });
    expect(out.statusCode).toBe(204);
    const me = await app.inject({ method: 'GET', url: '/auth/me', headers: bearer(tokens.accessToken) });
    expect(me.statusCode).toBe(401);
    expect(reason(me)).toBe('session_revoked');
    const refresh = await app.inject({ method: 'POST', url: '/auth/refresh', payload: { refresh_token: tokens.refreshToken } });
    expect(reason(refresh)).toBe('session_revoked');
  });

  it('logout with a personal token and a refresh token ends the refresh token\'s session', async () => {
    const user = await makeUser(app);
    const tokens = await app.services.sessions.start(user.id, meta);
    const { token } = await app.services.personalTokens.create(user.id, { name: 'logout' });
    const out = await app.inject({ method: 'POST', url: '/auth/logout', headers: bearer(token), payload: { refresh_token: tokens.refreshToken } });
    expect(out.statusCode).toBe(204);
    expect((await app.services.sessions.get(tokens.session.id))?.revokedReason).toBe('logout');
    expect(reason(await app.inject({ method: 'GET', url: '/auth/me', headers: bearer(tokens.accessToken) }))).toBe('session_revoked');
  });

  it('lists own sessions, revokes one, fires onRevoke, and hides other users sessions', async () => {
    const user = await makeUser(app);
    const other = await makeUser(app);
    const a = await app.services.sessions.start(user.id, meta);
    const b = await app.services.sessions.start(user.id, meta);
    const theirs = await app.services.sessions.start(other.id, meta);
    const events: unknown[] = [];
    const off = app.services.sessions.onRevoke((e) => events.push(e));
    const list = await app.inject({ method: 'GET', url: '/auth/sessions', headers: bearer(a.accessToken) });
    const ids = (list.json() as { data: { id: string; current: boolean }[] }).data;
    expect(ids.map((s) => s.id).sort()).toEqual([a.session.id, b.session.id].sort());
    expect(ids.find((s) => s.id === a.session.id)?.current).toBe(true);
    const foreign = await app.inject({ method: 'DELETE', url: `/auth/sessions/${theirs.session.id}`, headers: bearer(a.accessToken) });
    expect(foreign.statusCode).toBe(404);
    const del = await app.inject({ method: 'DELETE', url: `/auth/sessions/${b.session.id}`, headers: bearer(a.accessToken) });
    expect(del.statusCode).toBe(204);
    off();
    expect(events).toEqual([{ sessionId: b.session.id, userId: user.id, reason: 'user_revoked' }]);
    expect(reason(await app.inject({ method: 'GET', url: '/auth/me', headers: bearer(b.accessToken) }))).toBe('session_revoked');
  });

  it('refuses a disabled user, on access tokens and on refresh', async () => {
    const user = await makeUser(app);
    const tokens = await app.services.sessions.start(user.id, meta);
    const disabled: string[] = [];
    const off = app.services.sessions.onUserDisabled((id) => disabled.push(id));
    await app.services.sessions.disableUser(user.id);
    off();
    expect(disabled).toEqual([user.id]);
    const me = await app.inject({ method: 'GET', url: '/auth/me', headers: bearer(tokens.accessToken) });
    expect(me.statusCode).toBe(401);
    await expect(app.services.sessions.start(user.id, meta)).rejects.toMatchObject({ reason: 'user_disabled' });
  });

  it('refuses a disabled user even while the session is live (status changed elsewhere)', async () => {
    const user = await makeUser(app);
    const tokens = await app.services.sessions.start(user.id, meta);
    await app.services.users.setStatus(user.id, 'disabled');
    // Another instance's cache may hold the user a few seconds; this instance never saw them.
    const me = await app.inject({ method: 'GET', url: '/auth/me', headers: bearer(tokens.accessToken) });
    expect(reason(me)).toBe('user_disabled');
    const refresh = await app.inject({ method: 'POST', url: '/auth/refresh', payload: { refresh_token: tokens.refreshToken } });
    expect(reason(refresh)).toBe('user_disabled');
  });

  it('admin sees and revokes another user session; members may not', async () => {
    const adminUser = await makeUser(app, ['admin']);
    const member = await makeUser(app);
    const admin = await app.services.sessions.start(adminUser.id, meta);
    const mine = await app.services.sessions.start(member.id, meta);
    const denied = await app.inject({ method: 'GET', url: `/admin/users/${adminUser.id}/sessions`, headers: bearer(mine.accessToken) });
    expect(denied.statusCode).toBe(403);
    const list = await app.inject({ method: 'GET', url: `/admin/users/${member.subject}/sessions`, headers: bearer(admin.accessToken) });
    expect((list.json() as { data: { id: string }[] }).data.map((s) => s.id)).toEqual([mine.session.id]);
    const del = await app.inject({ method: 'DELETE', url: `/admin/sessions/${mine.session.id}`, headers: bearer(admin.accessToken) });
    expect(del.statusCode).toBe(204);
    expect((await app.services.sessions.get(mine.session.id))?.revokedReason).toBe('admin_revoked');
  });
});

