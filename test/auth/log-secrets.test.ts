import { Writable } from 'node:stream';
import { expect, it } from 'vitest';
import { describeEachDatabase } from '../helpers/env.js';
import { PUBLIC_URL, authApp, bearer, makeUser } from './helpers.js';

describeEachDatabase('no token reaches the logs', (db) => {
  it('start, refresh (JSON and cookie), reuse, logout and personal tokens log no secret', async () => {
    const lines: string[] = [];
    const logStream = new Writable({
      write(chunk, _encoding, done) {
        lines.push(String(chunk));
        done();
      },
    });
    const app = await authApp(db, { logStream, env: { LOG_LEVEL: 'trace' } });
    const secrets: string[] = [];
    try {
      const user = await makeUser(app);
      const first = await app.services.sessions.start(user.id, { ip: '127.0.0.1', userAgent: 'vitest', issuer: 'https://idp.test' });
      secrets.push(first.accessToken, first.refreshToken);
      const refreshed = await app.inject({ method: 'POST', url: '/auth/refresh', payload: { refresh_token: first.refreshToken } });
      const second = refreshed.json() as { access_token: string; refresh_token: string };
      secrets.push(second.access_token, second.refresh_token);
      const cookie = `pcl_at=${second.access_token}; pcl_rt=${second.refresh_token}; pcl_csrf=c`;
      const byCookie = await app.inject({ method: 'POST', url: '/auth/refresh', headers: { cookie, origin: PUBLIC_URL, 'x-csrf-token': 'c' } });
      expect(byCookie.statusCode).toBe(200);
      secrets.push(...byCookie.cookies.filter((c) => c.name !== 'pcl_csrf').map((c) => c.value));
      const made = await app.inject({ method: 'POST', url: '/auth/tokens', headers: bearer(second.access_token), payload: { name: 'ci' } });
      const pat = (made.json() as { token: string }).token;
      secrets.push(pat);
      expect((await app.inject({ method: 'GET', url: '/auth/me', headers: { 'x-api-key': pat } })).statusCode).toBe(200);
      expect((await app.inject({ method: 'GET', url: '/auth/me', headers: bearer(`${pat}x`) })).statusCode).toBe(401);
      // A replayed refresh token revokes the session and logs a warning, without the token.
      const replay = await app.inject({ method: 'POST', url: '/auth/refresh', payload: { refresh_token: first.refreshToken } });
      expect(replay.statusCode).toBe(401);
      const other = await app.services.sessions.start(user.id, { ip: '127.0.0.1', userAgent: null, issuer: 'https://idp.test' });
      secrets.push(other.accessToken, other.refreshToken);
      expect((await app.inject({ method: 'POST', url: '/auth/logout', headers: bearer(other.accessToken) })).statusCode).toBe(204);
    } finally {
      await app.close();
    }
    expect(lines.length).toBeGreaterThan(5);
    expect(lines.some((l) => l.includes('refresh token reused'))).toBe(true);
    for (const secret of secrets) {
      expect(secret.length).toBeGreaterThan(20);
      const leaked = lines.filter((l) => l.includes(secret) || l.includes(secret.slice(-24)));
      expect(leaked).toEqual([]);
    }
  });
});
