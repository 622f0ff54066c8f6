/** Upgrade authentication: the three methods, every refusal, Origin, the per-user cap, revocation, expiry. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ACCESS_COOKIE } from '../../src/auth/cookies.js';
import type { User } from '../../src/auth/users.js';
import { ORIGIN, TestClient, accessToken, makeUser, refused, startApp } from './helpers.js';
import type { WsTestApp } from './helpers.js';

describe('WebSocket authentication', () => {
  let t: WsTestApp;
  let user: User;
  beforeAll(async () => {
    t = await startApp({ WS_MAX_CONNECTIONS_PER_USER: '3' });
    user = await makeUser(t.app);
  });
  afterAll(() => t.close());

  it('accepts Authorization: Bearer and sends the welcome frame first', async () => {
    const { token, expiresAt } = await accessToken(t.app, user);
    const c = await TestClient.open(t.url, { headers: { authorization: `Bearer ${token}` } });
    const welcome = await c.next('welcome');
    expect(welcome).toMatchObject({ protocol: 'portcullis.v1', user: { id: user.id }, heartbeat_ms: 25_000, expires_at: Math.floor(expiresAt / 1000) * 1000 });
    expect(String(welcome.connection_id)).toMatch(/^conn_[0-9a-f]{24}$/);
    c.send({ type: 'ping' });
    expect(await c.next('pong')).toEqual({ type: 'pong' });
    c.close();
  });

  it('accepts the token in Sec-WebSocket-Protocol and selects portcullis.v1', async () => {
    const { token } = await accessToken(t.app, user);
    const c = await TestClient.open(t.url, { protocols: ['portcullis.v1', `bearer.${token}`] });
    expect(c.ws.protocol).toBe('portcullis.v1');
    expect(await c.next('welcome')).toMatchObject({ user: { id: user.id } });
    c.close();
  });

  it('accepts the session cookie from an allowed Origin and refuses it without one or from another', async () => {
    const { token } = await accessToken(t.app, user);
    const cookie = `${ACCESS_COOKIE}=${token}`;
    const c = await TestClient.open(t.url, { headers: { cookie, origin: ORIGIN } });
    expect(await c.next('welcome')).toMatchObject({ user: { id: user.id } });
    c.close();
    const foreign = await refused(t.url, { headers: { cookie, origin: 'https://evil.example' } });
    expect(foreign.status).toBe(403);
    expect(foreign.body.error.code).toBe('origin_not_allowed');
    const none = await refused(t.url, { headers: { cookie } });
    expect(none.status).toBe(403);
    expect(none.body.error.code).toBe('origin_required');
  });

  it('accepts a personal access token', async () => {
    const { token } = await t.app.services.personalTokens.create(user.id, { name: 'ws' });
    const c = await TestClient.open(t.url, { headers: { authorization: `Bearer ${token}` } });
    expect(await c.next('welcome')).toMatchObject({ expires_at: null });
    c.close();
  });

  it("closes a personal token's socket with 4001 when the token expires", async () => {
    const expiresAt = Date.now() + 1500;
    const { token } = await t.app.services.personalTokens.create(user.id, { name: 'ws-expiring', expiresAt });
    const c = await TestClient.open(t.url, { headers: { authorization: `Bearer ${token}` } });
    expect(await c.next('welcome')).toMatchObject({ expires_at: expiresAt });
    expect(await c.next('auth.expiring', 3000)).toEqual({ type: 'auth.expiring', expires_at: expiresAt });
    expect(await c.closed).toEqual({ code: 4001, reason: 'personal token expired' });
  });

  it('checks the credential again before each chat: one revoked where no kick reaches gets chat.error, then 4001', async () => {
    const { token, info } = await t.app.services.personalTokens.create(user.id, { name: 'ws-revoked-elsewhere' });
    const c = await TestClient.open(t.url, { headers: { authorization: `Bearer ${token}` } });
    await c.next('welcome');
    // As `portcullis tokens revoke` does from its own process: the row changes, no event here.
    await t.engine.database.db.updateTable('personal_tokens').set({ revoked_at: Date.now() }).where('id', '=', info.id).execute();
    c.send({ type: 'chat', id: 'c1', request: { model: 'claude-sonnet-4-6', max_tokens: 16, messages: [{ role: 'user', content: 'hi' }] } });
    expect(await c.next('chat.error')).toEqual({ type: 'chat.error', id: 'c1', error: { type: 'authentication_error', message: 'The personal access token has been revoked' } });
    expect(await c.closed).toEqual({ code: 4001, reason: 'The personal access token has been revoked' });
  });

  it('refuses with 401 before any socket: no token, bad token, expired, revoked', async () => {
    const none = await refused(t.url);
    expect([none.status, none.body.error.type, none.body.error.code]).toEqual([401, 'authentication_error', 'missing_credentials']);
    const bad = await refused(t.url, { headers: { authorization: 'Bearer not.a.jwt' } });
    expect(bad.status).toBe(401);
    const expired = await t.app.services.sessions.issueAccessOnly(user.id, { ttlMs: 1000, issuer: 'cli' });
    await new Promise((r) => setTimeout(r, 1100));
    const late = await refused(t.url, { headers: { authorization: `Bearer ${expired.accessToken}` } });
    expect([late.status, late.body.error.code]).toEqual([401, 'token_expired']);
    const { token, sessionId } = await accessToken(t.app, user);
    await t.app.services.sessions.revoke(sessionId, 'logout');
    const revoked = await refused(t.url, { headers: { authorization: `Bearer ${token}` } });
    expect([revoked.status, revoked.body.error.code]).toEqual([401, 'session_revoked']);
  });

  it('refuses an unknown protocol version and other paths', async () => {
    const { token } = await accessToken(t.app, user);
    const v2 = await refused(t.url, { protocols: ['portcullis.v2'], headers: { authorization: `Bearer ${token}` } });
    expect([v2.status, v2.body.error.code]).toEqual([400, 'unsupported_protocol']);
    const other = await refused(t.url.replace('/v1/ws', '/v1/other'), { headers: { authorization: `Bearer ${token}` } });
    expect(other.status).toBe(404);
  });

  it('refuses the connection past the per-user cap with 429 before the upgrade', async () => {
    const capped = await makeUser(t.app);
    const { token } = await accessToken(t.app, capped);
    const headers = { authorization: `Bearer ${token}` };
    const open = await Promise.all([1, 2, 3].map(() => TestClient.open(t.url, { headers })));
    const over = await refused(t.url, { headers });
    expect([over.status, over.body.error.code]).toEqual([429, 'too_many_connections']);
    open[0]!.close();
    await open[0]!.closed;
    await new Promise((r) => setTimeout(r, 20));
    const again = await TestClient.open(t.url, { headers });
    for (const c of [...open, again]) c.close();
  });

  it('closes the sockets of a revoked session with 4001 at once, and those of a disabled user', async () => {
    const { token, sessionId } = await accessToken(t.app, user);
    const other = await accessToken(t.app, user);
    const a = await TestClient.open(t.url, { headers: { authorization: `Bearer ${token}` } });
    const b = await TestClient.open(t.url, { headers: { authorization: `Bearer ${other.token}` } });
    await Promise.all([a.next('welcome'), b.next('welcome')]);
    await t.app.services.sessions.revoke(sessionId, 'logout');
    expect((await a.closed).code).toBe(4001);
    b.send({ type: 'ping' });
    expect(await b.next('pong')).toEqual({ type: 'pong' });
    const victim = await makeUser(t.app);
    const v = await TestClient.open(t.url, { headers: { authorization: `Bearer ${(await accessToken(t.app, victim)).token}` } });
    await v.next('welcome');
    await t.app.services.sessions.disableUser(victim.id);
    expect((await v.closed).code).toBe(4001);
    b.close();
  });

  it('closes the sockets of a revoked personal token with 4001 at once, and no other', async () => {
    const revoked = await t.app.services.personalTokens.create(user.id, { name: 'ws-revoked' });
    const kept = await t.app.services.personalTokens.create(user.id, { name: 'ws-kept' });
    const a = await TestClient.open(t.url, { headers: { authorization: `Bearer ${revoked.token}` } });
    const b = await TestClient.open(t.url, { headers: { authorization: `Bearer ${kept.token}` } });
    await Promise.all([a.next('welcome'), b.next('welcome')]);
    await t.app.services.personalTokens.revoke(revoked.info.id, user.id);
    const closed = await a.closed;
    expect([closed.code, closed.reason]).toEqual([4001, 'personal token revoked']);
    b.send({ type: 'ping' });
    expect(await b.next('pong')).toEqual({ type: 'pong' });
    b.close();
  });

  it('warns before the token expires and closes with 4001; auth.refresh keeps the connection open', async () => {
    const short = await t.app.services.sessions.issueAccessOnly(user.id, { ttlMs: 1500, issuer: 'cli' });
    const c = await TestClient.open(t.url, { headers: { authorization: `Bearer ${short.accessToken}` } });
    await c.next('welcome');
    const warning = await c.next('auth.expiring', 3000);
    expect(warning.expires_at).toBe(short.accessExpiresAt);
    expect((await c.closed).code).toBe(4001);

    const again = await t.app.services.sessions.issueAccessOnly(user.id, { ttlMs: 1500, issuer: 'cli' });
    const d = await TestClient.open(t.url, { headers: { authorization: `Bearer ${again.accessToken}` } });
    await d.next('welcome');
    const fresh = await accessToken(t.app, user);
    d.send({ type: 'auth.refresh', token: fresh.token });
    expect(await d.next('auth.ok')).toEqual({ type: 'auth.ok', expires_at: fresh.expiresAt });
    await new Promise((r) => setTimeout(r, 1700));
    d.send({ type: 'ping' });
    expect(await d.next('pong')).toEqual({ type: 'pong' });
    const stranger = await accessToken(t.app, await makeUser(t.app));
    d.send({ type: 'auth.refresh', token: stranger.token });
    expect(await d.next('error')).toMatchObject({ error: { type: 'permission_error' } });
    d.close();
  });
});

describe('WebSocket credentials checked again every WS_AUTH_RECHECK_MS', () => {
  let t: WsTestApp;
  beforeAll(async () => {
    t = await startApp({ WS_AUTH_RECHECK_MS: '100ms' });
  });
  afterAll(() => t.close());

  it('closes the sockets of a user disabled and of a token revoked where no kick reaches, and no other', async () => {
    const disabled = await makeUser(t.app);
    const kept = await makeUser(t.app);
    const pat = await t.app.services.personalTokens.create(kept.id, { name: 'ws-sweep' });
    const a = await TestClient.open(t.url, { headers: { authorization: `Bearer ${(await accessToken(t.app, disabled)).token}` } });
    const b = await TestClient.open(t.url, { headers: { authorization: `Bearer ${pat.token}` } });
    const c = await TestClient.open(t.url, { headers: { authorization: `Bearer ${(await accessToken(t.app, kept)).token}` } });
    await Promise.all([a.next('welcome'), b.next('welcome'), c.next('welcome')]);
    // As the CLI does from its own process: rows change, nothing is announced to this one.
    await t.app.services.users.setStatus(disabled.id, 'disabled');
    await t.engine.database.db.updateTable('personal_tokens').set({ revoked_at: Date.now() }).where('id', '=', pat.info.id).execute();
    // The user's status is cached for USER_CACHE_MS (3 s); the token is read afresh.
    expect(await b.closed).toEqual({ code: 4001, reason: 'The personal access token has been revoked' });
    expect(await a.closed).toEqual({ code: 4001, reason: 'This user is disabled' });
    c.send({ type: 'ping' });
    expect(await c.next('pong')).toEqual({ type: 'pong' });
    c.close();
  });
});
