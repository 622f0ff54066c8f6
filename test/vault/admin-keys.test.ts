import { randomBytes } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { buildApp } from '../../src/app.js';
import { describeEachDatabase } from '../helpers/env.js';
import { newSecret, usage } from './fixtures.js';

describeEachDatabase('admin key and usage routes', (ctx) => {
  let app: FastifyInstance;
  const imported = newSecret();
  beforeAll(async () => {
    const env = { PORTCULLIS_MASTER_KEY: randomBytes(32).toString('base64'), ANTHROPIC_API_KEY: imported };
    app = await buildApp(ctx.config(env), await ctx.engine(env));
    const issue = async (subject: string, roles: string[]) => {
      const user = await app.services.users.create({ issuer: 'https://example.test', subject, roles });
      const tokens = await app.services.sessions.start(user.id, { ip: '127.0.0.1', userAgent: null, issuer: 'https://example.test' });
      return { authorization: `Bearer ${tokens.accessToken}` };
    };
    admin = await issue('admin.crypto', ['admin']);
    member = await issue('member.crypto', ['member']);
  });
  afterAll(async () => {
    await app?.close();
  });

  let admin: Record<string, string>;
  let member: Record<string, string>;

  it('imports ANTHROPIC_API_KEY at start and lends it', () => {
    expect(app.services.vault.count()).toBe(1);
    const lease = app.services.vault.pick('claude-sonnet-4-5', new Set(), () => true)!;
    expect(lease).toMatchObject({ name: 'default', secret: imported });
    lease.release();
  });

  it('manages keys over HTTP without ever returning a secret', async () => {
    const secret = newSecret();
    const next = newSecret();
    const bodies: string[] = [];
    const call = async (method: 'GET' | 'POST' | 'DELETE', url: string, payload?: object) => {
      const res = await app.inject({ method, url, headers: admin, ...(payload ? { payload } : {}) });
      bodies.push(res.body);
      return res;
    };
    const add = await call('POST', '/admin/keys', { name: 'http-key', secret, weight: 2, models: ['claude-*'] });
    expect(add.statusCode).toBe(201);
    expect(add.json()).toMatchObject({ name: 'http-key', last4: `…${secret.slice(-4)}`, weight: 2 });
    expect(app.services.vault.count()).toBe(2);

    const list = await call('GET', '/admin/keys');
    expect(list.json().data.map((k: { name: string }) => k.name)).toEqual(['default', 'http-key']);
    expect((await call('POST', '/admin/keys/http-key/rotate', { secret: next })).json()).toMatchObject({ last4: `…${next.slice(-4)}` });
    expect((await call('POST', '/admin/keys/http-key/disable')).json().state).toBe('disabled');
    expect(app.services.vault.count()).toBe(1);
    expect((await call('POST', '/admin/keys/http-key/enable')).json().state).toBe('enabled');
    expect((await call('DELETE', '/admin/keys/http-key')).statusCode).toBe(200);
    expect((await call('DELETE', '/admin/keys/http-key')).json().error).toMatchObject({ type: 'not_found_error' });

    const bad = await call('POST', '/admin/keys', { name: 'x', secret: 'has whitespace in it ok' });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().error.message).toBe('secret: the API key contains whitespace');
    for (const body of bodies) for (const s of [secret, next, imported]) expect(body).not.toContain(s);
  });

  it('summarises usage and refuses anonymous callers and members', async () => {
    await app.services.usage.record(usage({ userId: 'usr_h', model: 'claude-opus-4-1', createdAt: 5 * 86_400_000 + 1 }));
    const res = await app.inject({ method: 'GET', url: '/admin/usage?by=day&since=0', headers: admin });
    expect(res.json().data).toEqual([expect.objectContaining({ group: '1970-01-06', requests: 1 })]);
    expect((await app.inject({ method: 'GET', url: '/admin/usage?by=planet', headers: admin })).statusCode).toBe(400);
    expect((await app.inject({ method: 'GET', url: '/admin/keys' })).statusCode).toBe(401);
    for (const url of ['/admin/keys', '/admin/usage']) {
      const denied = await app.inject({ method: 'GET', url, headers: member });
      expect(denied.statusCode).toBe(403);
      expect(denied.json()).toMatchObject({ type: 'error', error: { type: 'permission_error' } });
    }
  });
});
