import { afterAll, beforeAll, expect, it } from 'vitest';
import { createAuthServices } from '../../src/auth/services.js';
import type { AuthServices } from '../../src/auth/services.js';
import { UserService } from '../../src/auth/users.js';
import type { Engine } from '../../src/engine/index.js';
import { keyRing } from '../../src/security/envelope.js';
import { describeEachDatabase } from '../helpers/env.js';

const MINUTE = 60_000;
const DAY = 86_400_000;

describeEachDatabase('lifetimes on a controlled clock', (db) => {
  let engine: Engine;
  let auth: AuthServices;
  let users: UserService;
  const clock = { t: Date.now() };
  const meta = { ip: '127.0.0.1', userAgent: null, issuer: 'https://idp.test' };
  const warnings: string[] = [];

  beforeAll(async () => {
    engine = await db.engine();
    users = new UserService(engine.database.db);
    auth = createAuthServices({
      config: { publicUrl: 'http://127.0.0.1:8080', accessTokenTtl: 15 * MINUTE, refreshTokenTtl: 2 * DAY, sessionMaxAge: 5 * DAY, signingKeyRotateInterval: 3 * DAY },
      db: engine.database.db,
      users,
      keyRing: keyRing(Buffer.alloc(32, 7)),
      log: { warn: (_o, msg) => warnings.push(msg) },
      now: () => clock.t,
    });
  });
  afterAll(async () => {
    await engine.close();
  });

  const user = () => users.create({ issuer: 'https://idp.test', subject: `clock-${Math.random().toString(36).slice(2)}.crypto` });

  it('access tokens expire after ACCESS_TOKEN_TTL; refresh slides; the session cap holds', async () => {
    const u = await user();
    let tokens = await auth.sessions.start(u.id, meta);
    expect(tokens.expiresIn).toBe(15 * 60);
    expect((await auth.authenticate({ authorization: `Bearer ${tokens.accessToken}` })).sessionId).toBe(tokens.session.id);
    clock.t += 16 * MINUTE;
    await expect(auth.authenticate({ authorization: `Bearer ${tokens.accessToken}` })).rejects.toMatchObject({ reason: 'token_expired' });
    // Refreshing every day and a half keeps the session alive (sliding)…
    for (let i = 0; i < 3; i++) {
      clock.t += 1.5 * DAY;
      tokens = await auth.sessions.refresh(tokens.refreshToken, meta);
    }
    // …until the absolute cap: 5 days after the start, whatever the refreshes.
    clock.t += 1 * DAY;
    await expect(auth.sessions.refresh(tokens.refreshToken, meta)).rejects.toMatchObject({ reason: 'session_expired' });
  });

  it('an unused refresh token expires after REFRESH_TOKEN_TTL', async () => {
    const tokens = await auth.sessions.start((await user()).id, meta);
    clock.t += 2 * DAY + MINUTE;
    await expect(auth.sessions.refresh(tokens.refreshToken, meta)).rejects.toMatchObject({ reason: 'refresh_token_expired' });
  });

  it('the access token never outlives its session', async () => {
    const issued = await auth.sessions.issueAccessOnly((await user()).id, { ttlMs: 5 * MINUTE, issuer: 'cli' });
    expect(issued.accessExpiresAt).toBeLessThanOrEqual(clock.t + 5 * MINUTE);
    await expect(auth.sessions.issueAccessOnly((await user()).id, { ttlMs: 2 * DAY, issuer: 'cli' })).rejects.toMatchObject({ reason: 'invalid_ttl' });
  });

  it('rotates the signing key on schedule and keeps the old one verifying for the retention window', async () => {
    const tokens = await auth.sessions.start((await user()).id, meta);
    const first = await auth.signingKeys.current();
    clock.t += 3 * DAY + MINUTE;
    const second = await auth.signingKeys.current();
    expect(second.kid).not.toBe(first.kid);
    const kids = (await auth.signingKeys.jwks()).keys.map((k) => k.kid);
    expect(kids).toEqual(expect.arrayContaining([first.kid, second.kid]));
    // The old token is past its own exp by now, but its key is still published until retention ends.
    await expect(auth.authenticate({ apiKey: tokens.accessToken })).rejects.toMatchObject({ reason: 'token_expired' });
    clock.t += 2 * DAY;
    expect((await auth.signingKeys.jwks()).keys.map((k) => k.kid)).not.toContain(first.kid);
  });
});
