/**
 * The page's routes without a browser: the page and its assets from fixed directories only,
 * /api/info, and the read-only GET /admin/users behind manage_users.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../../src/app.js';
import { loadConfig } from '../../src/config/index.js';
import { createEngine } from '../../src/engine/index.js';
import type { Engine } from '../../src/engine/index.js';
import type { FastifyInstance } from 'fastify';
import { baseEnv } from '../helpers/env.js';
import { accessToken, makeUser } from '../realtime/helpers.js';

describe('chat page routes', () => {
  let app: FastifyInstance;
  let engine: Engine;
  let dir: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'portcullis-webroutes-'));
    const assets = join(dir, 'assets');
    mkdirSync(join(assets, 'client'), { recursive: true });
    writeFileSync(join(assets, 'client', 'index.js'), 'export const x = 1;\n');
    writeFileSync(join(dir, 'secret.js'), 'nope');
    const config = loadConfig({ ...baseEnv(dir), DATABASE_URL: `sqlite:${join(dir, 'test.db')}`, PUBLIC_URL: 'http://127.0.0.1:8080' });
    engine = await createEngine(config);
    app = await buildApp(config, engine, { webAssetsDir: assets });
  });
  afterAll(async () => {
    await app?.close();
    await engine?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('serves the page with a strict CSP and the compiled client as JavaScript', async () => {
    const page = await app.inject({ url: '/' });
    expect(page.statusCode).toBe(200);
    expect(page.headers['content-type']).toContain('text/html');
    expect(page.headers['content-security-policy']).toContain("script-src 'self'");
    expect(page.body).toContain('/assets/web/page/app.js');
    const js = await app.inject({ url: '/assets/client/index.js' });
    expect(js.statusCode).toBe(200);
    expect(js.headers['content-type']).toContain('text/javascript');
    expect((await app.inject({ url: '/assets/style.css' })).statusCode).toBe(200);
  });

  it('serves nothing outside the allowlist', async () => {
    for (const url of ['/assets/../secret.js', '/assets/client/../../secret.js', '/assets/client/%2e%2e%2fsecret.js', '/assets/client/index.ts', '/assets/index.html', '/assets/package.json', '/assets/client/missing.js']) {
      expect((await app.inject({ url })).statusCode, url).toBe(404);
    }
  });

  it('GET /api/info says whether the gateway is in demo mode', async () => {
    const info = (await app.inject({ url: '/api/info' })).json() as { demo: boolean; version: string };
    expect(info.demo).toBe(true);
    expect(info.version).toMatch(/^\d+\.\d+\.\d+/);
  });

  it('GET /admin/users lists users with roles and permissions, for manage_users only', async () => {
    const admin = await makeUser(app, ['admin']);
    const member = await makeUser(app, ['member']);
    const { token } = await accessToken(app, admin);
    const res = await app.inject({ url: '/admin/users', headers: { authorization: `Bearer ${token}` } });
    expect(res.statusCode).toBe(200);
    const rows = (res.json() as { data: Array<{ subject: string; roles: string[]; capabilities: string[] }> }).data;
    expect(rows.find((u) => u.subject === member.subject)).toMatchObject({ roles: ['member'], capabilities: [] });
    expect(rows.find((u) => u.subject === admin.subject)?.capabilities).toContain('manage_users');
    const other = await accessToken(app, member);
    expect((await app.inject({ url: '/admin/users', headers: { authorization: `Bearer ${other.token}` } })).statusCode).toBe(403);
  });
});
