import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { cli as runCommand } from '../helpers/cli.js';
import { describeEachDatabase } from '../helpers/env.js';
import { PUBLIC_URL, authApp, bearer, makeUser } from './helpers.js';

/** Runs the CLI in-process against the suite's database; returns what it printed. */
async function cli(env: Record<string, string | undefined>, args: string[]): Promise<string> {
  const result = await runCommand(args, env);
  if (result.code !== 0) throw new Error(`portcullis ${args.join(' ')} failed: ${result.stderr}`);
  return result.stdout.trim();
}

describeEachDatabase('token and sessions commands', (db) => {
  let app: FastifyInstance;
  beforeAll(async () => {
    app = await authApp(db);
  });
  afterAll(async () => {
    await app.close();
  });

  it('issues an access token the server accepts, lists and revokes its session', async () => {
    const user = await makeUser(app);
    const env = db.env({ PUBLIC_URL });
    const token = await cli(env, ['token', 'issue', '--user', user.subject, '--ttl', '10m']);
    const me = await app.inject({ method: 'GET', url: '/auth/me', headers: bearer(token) });
    expect(me.statusCode).toBe(200);
    const sessionId = (me.json() as { session_id: string }).session_id;
    const listed = JSON.parse(await cli(env, ['sessions', 'list', '--user', user.id, '--json'])) as { id: string; issuer: string }[];
    expect(listed).toEqual([expect.objectContaining({ id: sessionId, issuer: 'cli' })]);
    await cli(env, ['sessions', 'revoke', sessionId]);
    // The CLI is another process: the server sees it within SESSION_CACHE_MS; the record is at once.
    expect((await app.services.sessions.get(sessionId))?.revokedReason).toBe('cli_revoked');
  });

  it('users disable ends the user\'s sessions (refresh refused after enable too); users enable lets them sign in again', async () => {
    const user = await makeUser(app);
    const env = db.env({ PUBLIC_URL });
    const tokens = await app.services.sessions.start(user.id, { ip: '127.0.0.1', userAgent: null, issuer: 'https://idp.test' });
    expect(await cli(env, ['users', 'disable', user.subject])).toBe(`${user.subject}: disabled`);
    expect((await app.services.sessions.get(tokens.session.id))?.revokedReason).toBe('user_disabled');
    expect(await cli(env, ['users', 'enable', user.subject])).toBe(`${user.subject}: active`);
    const refresh = await app.inject({ method: 'POST', url: '/auth/refresh', payload: { refresh_token: tokens.refreshToken } });
    expect([refresh.statusCode, (refresh.json() as { error: { code: string } }).error.code]).toEqual([401, 'session_revoked']);
    expect((await app.services.sessions.start(user.id, { ip: '127.0.0.1', userAgent: null, issuer: 'https://idp.test' })).accessToken).toBeTruthy();
  });

  it('creates a personal token with models and expiry, printed once', async () => {
    const user = await makeUser(app);
    const env = db.env({ PUBLIC_URL });
    const out = JSON.parse(await cli(env, ['token', 'create-personal', '--user', user.subject, '--name', 'ci', '--expires', '30d', '--model', 'claude-haiku-*', '--json'])) as {
      token: string;
      expiresAt: number;
    };
    expect(out.token.startsWith('pcl_pat_')).toBe(true);
    expect(out.expiresAt).toBeGreaterThan(Date.now() + 29 * 86_400_000);
    const me = await app.inject({ method: 'GET', url: '/auth/me', headers: { 'x-api-key': out.token } });
    expect(me.json()).toMatchObject({ permissions: { models: ['claude-haiku-*'] } });
  });
});
