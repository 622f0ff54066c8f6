import { afterAll, describe, expect, it } from 'vitest';
import { buildApp } from '../../src/app.js';
import { TEST_DATABASE_URL, describeEachDatabase, uniqueName } from '../helpers/env.js';
import { startTcpProxy } from '../helpers/tcp-proxy.js';
import { loadConfig } from '../../src/config/index.js';
import { createEngine } from '../../src/engine/index.js';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

describeEachDatabase('health endpoints', (db) => {
  it('GET /healthz is 200 and /readyz reports the database ready', async () => {
    const app = await buildApp(db.config(), await db.engine());
    const health = await app.inject('/healthz');
    expect(health.statusCode).toBe(200);
    expect(health.json()).toEqual({ status: 'ok' });
    expect(health.headers['x-request-id']).toMatch(/^req_[0-9a-f]{32}$/);
    // Each request its own id; a client's own well-formed id is kept.
    const again = await app.inject('/healthz');
    expect(again.headers['x-request-id']).toMatch(/^req_[0-9a-f]{32}$/);
    expect(again.headers['x-request-id']).not.toBe(health.headers['x-request-id']);
    const given = await app.inject({ url: '/healthz', headers: { 'x-request-id': 'trace-42.a:b' } });
    expect(given.headers['x-request-id']).toBe('trace-42.a:b');
    const ready = await app.inject('/readyz');
    expect(ready.statusCode).toBe(200);
    expect(ready.json().checks).toEqual({ database: 'ok' });
    await app.close();
  });

  it('answers unknown routes with a machine-readable 404 in Anthropic shape', async () => {
    const app = await buildApp(db.config(), await db.engine());
    const res = await app.inject('/nowhere?token=secret');
    expect(res.statusCode).toBe(404);
    expect(res.json()).toMatchObject({ type: 'error', error: { type: 'not_found_error', code: 'not_found' } });
    expect(res.body).not.toContain('secret');
    await app.close();
  });

  it('/readyz is 503 while draining', async () => {
    const app = await buildApp(db.config(), await db.engine());
    app.services.lifecycle.draining = true;
    const res = await app.inject('/readyz');
    expect(res.statusCode).toBe(503);
    expect(res.json().failing).toEqual(['draining']);
    await app.close();
  });
});

describe.runIf(TEST_DATABASE_URL)('readiness when PostgreSQL goes away [postgres]', () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterAll(async () => {
    for (const c of cleanups.reverse()) await c();
  });

  it('is 503 naming the database while it is unreachable, and 200 again when it returns', async () => {
    const target = new URL(TEST_DATABASE_URL!);
    const proxy = await startTcpProxy({ host: target.hostname, port: Number(target.port || 5432) });
    cleanups.push(() => proxy.close());
    target.host = `127.0.0.1:${proxy.port}`;
    const schema = uniqueName('t').toLowerCase();
    const config = loadConfig({
      LOG_LEVEL: 'silent',
      DATA_DIR: mkdtempSync(join(tmpdir(), 'pc-ready-')),
      DATABASE_URL: target.toString(),
      DATABASE_SCHEMA: schema,
    });
    const engine = await createEngine(config);
    const app = await buildApp(config, engine);
    cleanups.push(async () => {
      await app.close();
      await engine.close();
      const pg = (await import('pg')).default;
      const client = new pg.Client({ connectionString: TEST_DATABASE_URL });
      await client.connect();
      await client.query(`drop schema if exists "${schema}" cascade`);
      await client.end();
    });
    expect((await app.inject('/readyz')).statusCode).toBe(200);

    await proxy.cut();
    const down = await app.inject('/readyz');
    expect(down.statusCode).toBe(503);
    expect(down.json().failing).toEqual(['database']);
    expect(down.body).not.toContain('postgres://');

    await proxy.restore();
    let status = 0;
    for (let i = 0; i < 20 && status !== 200; i++) {
      status = (await app.inject('/readyz')).statusCode;
      if (status !== 200) await new Promise((r) => setTimeout(r, 100));
    }
    expect(status).toBe(200);
  });

  it('fails to start with one clear line naming the database when it is unreachable', async () => {
    const proxy = await startTcpProxy({ host: '127.0.0.1', port: 5432 });
    await proxy.cut();
    const config = loadConfig({ LOG_LEVEL: 'silent', DATABASE_URL: `postgres://app:hunter2@127.0.0.1:${proxy.port}/test` });
    const err = (await createEngine(config).catch((e: unknown) => e)) as Error;
    expect(err.message).toMatch(/^database: cannot use PostgreSQL at postgres:\/\/app:\*\*\*@127\.0\.0\.1/);
    expect(err.message).not.toContain('hunter2');
  });
});
