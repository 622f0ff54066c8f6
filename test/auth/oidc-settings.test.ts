import { randomBytes } from 'node:crypto';
import { expect, it } from 'vitest';
import { buildApp } from '../../src/app.js';
import { ConfigError } from '../../src/config/index.js';
import { describeEachDatabase } from '../helpers/env.js';

const MASTER = randomBytes(32).toString('base64');

describeEachDatabase('sign-in settings', (db) => {
  it('refuses DEV_IDP=on in production at startup', async () => {
    const env = { NODE_ENV: 'production', DEV_IDP: 'on', PORTCULLIS_MASTER_KEY: MASTER };
    await expect(buildApp(db.config(env), await db.engine(env))).rejects.toThrow(/DEV_IDP=on is refused with NODE_ENV=production/);
  });

  it('does not mount the development provider in production, and login answers 503 without a client', async () => {
    const env = { NODE_ENV: 'production', PORTCULLIS_MASTER_KEY: MASTER };
    const app = await buildApp(db.config(env), await db.engine(env));
    try {
      expect((await app.inject({ url: '/dev-idp/.well-known/openid-configuration' })).statusCode).toBe(404);
      const login = await app.inject({ url: '/auth/login' });
      expect(login.statusCode).toBe(503);
      expect(login.json().error.code).toBe('login_not_configured');
    } finally {
      await app.close();
    }
  });

  it('refuses settings that could never sign anyone in', async () => {
    const bad: Record<string, string>[] = [
      { UAUTH_CLIENT_ID: 'c', UAUTH_TOKEN_AUTH_METHOD: 'client_secret_basic' },
      { UAUTH_CLIENT_ID: 'c', UAUTH_CLIENT_SECRET: 's', UAUTH_ISSUER: 'http://idp.example.test' },
      { UAUTH_SCOPE: 'wallet email' },
    ];
    for (const env of bad) {
      await expect(buildApp(db.config(env), await db.engine(env)), JSON.stringify(env)).rejects.toBeInstanceOf(ConfigError);
    }
  });
});
