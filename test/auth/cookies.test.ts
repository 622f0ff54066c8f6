import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { IssuedTokens } from '../../src/auth/sessions.js';
import { describeEachDatabase } from '../helpers/env.js';
import { PUBLIC_URL, authApp, makeUser, reason } from './helpers.js';

const meta = { ip: '127.0.0.1', userAgent: null, issuer: 'https://idp.test' };

function cookieHeader(tokens: IssuedTokens, csrf = 'csrf-value-123'): string {
  return `pcl_at=${tokens.accessToken}; pcl_rt=${tokens.refreshToken}; pcl_csrf=${csrf}`;
}

describeEachDatabase('session cookies and CSRF', (db) => {
  let app: FastifyInstance;
  beforeAll(async () => {
    app = await authApp(db, { env: { ALLOWED_ORIGINS: 'http://127.0.0.1:3000' } });
  });
  afterAll(async () => {
    await app.close();
  });

  it('authenticates a GET by cookie without any CSRF header', async () => {
    const tokens = await app.services.sessions.start((await makeUser(app)).id, meta);
    const res = await app.inject({ method: 'GET', url: '/auth/me', headers: { cookie: cookieHeader(tokens) } });
    expect(res.statusCode).toBe(200);
    expect((res.json() as { credential: string }).credential).toBe('cookie');
  });

  it('refuses a cookie-authenticated POST without x-csrf-token, with a wrong one, or from a foreign origin', async () => {
    const tokens = await app.services.sessions.start((await makeUser(app)).id, meta);
    const post = (headers: Record<string, string>) =>
      app.inject({ method: 'POST', url: '/auth/tokens', headers: { cookie: cookieHeader(tokens), ...headers }, payload: { name: 'x' } });
    const none = await post({ origin: PUBLIC_URL });
    expect(none.statusCode).toBe(403);
    expect(reason(none)).toBe('csrf_token');
    expect(reason(await post({ origin: PUBLIC_URL, 'x-csrf-token': 'wrong' }))).toBe('csrf_token');
    expect(reason(await post({ origin: 'http://127.0.0.1:6666', 'x-csrf-token': 'csrf-value-123' }))).toBe('csrf_origin');
    expect(reason(await post({ 'x-csrf-token': 'csrf-value-123' }))).toBe('csrf_origin');
    expect((await post({ origin: PUBLIC_URL, 'x-csrf-token': 'csrf-value-123' })).statusCode).toBe(201);
    expect((await post({ origin: 'http://127.0.0.1:3000', 'x-csrf-token': 'csrf-value-123' })).statusCode).toBe(201);
    expect((await post({ referer: `${PUBLIC_URL}/app/page`, 'x-csrf-token': 'csrf-value-123' })).statusCode).toBe(201);
  });

  it('refreshes by cookie: new cookies with the right attributes, no refresh token in the body', async () => {
    const tokens = await app.services.sessions.start((await makeUser(app)).id, meta);
    const denied = await app.inject({ method: 'POST', url: '/auth/refresh', headers: { cookie: cookieHeader(tokens), origin: PUBLIC_URL } });
    expect(reason(denied)).toBe('csrf_token');
    const res = await app.inject({
      method: 'POST',
      url: '/auth/refresh',
      headers: { cookie: cookieHeader(tokens), origin: PUBLIC_URL, 'x-csrf-token': 'csrf-value-123', 'content-type': 'application/json' },
    });
    expect(res.statusCode).toBe(200);
    const body = res.json() as Record<string, unknown>;
    expect(body).toMatchObject({ token_type: 'Bearer', access_token: expect.any(String) });
    expect(body.refresh_token).toBeUndefined();
    const cookies = Object.fromEntries(res.cookies.map((c) => [c.name, c]));
    expect(cookies.pcl_at).toMatchObject({ httpOnly: true, sameSite: 'Lax', path: '/' });
    expect(cookies.pcl_rt).toMatchObject({ httpOnly: true, sameSite: 'Lax', path: '/auth' });
    expect(cookies.pcl_csrf?.httpOnly).toBeFalsy();
    expect(cookies.pcl_rt!.value).not.toBe(tokens.refreshToken);
    expect(cookies.pcl_at!.secure).toBeFalsy();
  });

  it('logs out by cookie (with CSRF) and clears the cookies', async () => {
    const tokens = await app.services.sessions.start((await makeUser(app)).id, meta);
    const denied = await app.inject({ method: 'POST', url: '/auth/logout', headers: { cookie: cookieHeader(tokens), origin: PUBLIC_URL } });
    expect(denied.statusCode).toBe(403);
    const res = await app.inject({ method: 'POST', url: '/auth/logout', headers: { cookie: cookieHeader(tokens), origin: PUBLIC_URL, 'x-csrf-token': 'csrf-value-123' } });
    expect(res.statusCode).toBe(204);
    expect(res.cookies.filter((c) => c.value === '').map((c) => c.name).sort()).toEqual(['pcl_at', 'pcl_csrf', 'pcl_rt']);
    expect((await app.services.sessions.get(tokens.session.id))?.revokedReason).toBe('logout');
  });
});
