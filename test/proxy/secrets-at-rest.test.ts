/**
 * Must show 3: after upstream keys were added and USED through the gateway (usage records,
 * key usage, logs written), the raw database (SQLite file bytes, PostgreSQL rows as text)
 * holds no key material, no personal token and no master key; then a master-key rotation,
 * an app rebuilt WITHOUT the old master key, and every key still serves requests end to end.
 */
import { existsSync, readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import { loadMasterKeyRing } from '../../src/security/master-key.js';
import type { Simulator } from '../../src/simulator/index.js';
import { buildSimulator } from '../../src/simulator/index.js';
import { rotateMasterKey } from '../../src/vault/master-key-rotation.js';
import { TEST_DATABASE_URL, describeEachDatabase } from '../helpers/env.js';
import type { Gateway } from './helpers.js';
import { messageBody, newSecret, startGateway, usageRows } from './helpers.js';

describeEachDatabase('no key material at rest, master-key rotation end to end', (ctx) => {
  const secrets = [newSecret(), newSecret()];
  const oldMaster = randomBytes(32).toString('base64');
  const newMaster = randomBytes(32).toString('base64');
  let sim: Simulator;
  let simUrl: string;
  beforeAll(async () => {
    sim = await buildSimulator({ keys: secrets });
    simUrl = await sim.listen({ port: 0, host: '127.0.0.1' });
  });
  afterAll(async () => {
    await sim?.close();
  });

  const gateway = (env: Record<string, string>) => startGateway({ db: ctx, sim, simUrl, secrets, env: { UPSTREAM_MAX_RETRIES: '0', ...env } });

  /** Both keys serve a request through the gateway (the other key disabled for the call). */
  async function useEveryKey(gw: Gateway): Promise<void> {
    for (const [i, name] of gw.keyNames.entries()) {
      const other = gw.keyNames[1 - i]!;
      await gw.app.services.vault.disable(other);
      for (const stream of [false, true]) {
        const res = await fetch(`${gw.url}/v1/messages`, {
          method: 'POST',
          headers: { 'x-api-key': gw.token, 'anthropic-version': '2023-06-01', 'content-type': 'application/json' },
          body: JSON.stringify(messageBody(`via ${name}`, { stream })),
        });
        expect(res.status).toBe(200);
        expect(await res.text()).toContain(stream ? 'event: message_stop' : `via ${name}`);
        expect(sim.requests.at(-1)!.key).toBe(secrets[i]);
      }
      await gw.app.services.vault.enable(other);
    }
  }

  /** Every byte the database holds, as text. */
  async function rawDatabase(): Promise<string> {
    const env = ctx.env();
    if (ctx.name === 'sqlite') {
      const file = env.DATABASE_URL!.replace(/^sqlite:/, '');
      return [file, `${file}-wal`, `${file}-journal`]
        .filter((f) => existsSync(f))
        .map((f) => readFileSync(f).toString('latin1'))
        .join('\n');
    }
    const client = new pg.Client({ connectionString: TEST_DATABASE_URL });
    await client.connect();
    try {
      const schema = env.DATABASE_SCHEMA!;
      const tables = await client.query<{ table_name: string }>('select table_name from information_schema.tables where table_schema = $1', [schema]);
      expect(tables.rows.map((t) => t.table_name)).toEqual(expect.arrayContaining(['upstream_keys', 'usage_records', 'personal_tokens']));
      const out: string[] = [];
      for (const { table_name } of tables.rows) {
        const rows = await client.query<{ row: string }>(`select row_to_json(t)::text as row from "${schema}"."${table_name}" t`);
        out.push(...rows.rows.map((r) => r.row));
      }
      return out.join('\n');
    } finally {
      await client.end();
    }
  }

  it('finds no key material in the raw database after keys were used through the gateway, and rotation keeps every key usable', async () => {
    const gw = await gateway({ PORTCULLIS_MASTER_KEY: oldMaster });
    let token = gw.token;
    try {
      await useEveryKey(gw);
      const rows = await usageRows(gw);
      expect(rows.length).toBe(4);
      expect(new Set(rows.map((r) => r.key_id)).size).toBe(2);
      const logs = gw.rawLogs.join('');
      for (const s of [...secrets, gw.token, oldMaster]) expect(logs).not.toContain(s);
    } finally {
      await gw.close();
    }

    const raw = await rawDatabase();
    expect(raw.length).toBeGreaterThan(1000);
    for (const s of [...secrets, token, oldMaster]) {
      expect(raw).not.toContain(s);
      // Not even a long fragment, nor the base64 of the whole secret.
      expect(raw).not.toContain(s.slice(-24));
      expect(raw).not.toContain(Buffer.from(s).toString('base64'));
    }

    // Rotate online: the new key current, the old one still readable.
    const during = loadMasterKeyRing(loadConfig(ctx.env({ PORTCULLIS_MASTER_KEY: newMaster, PORTCULLIS_MASTER_KEY_PREVIOUS: oldMaster }))).ring;
    const engineForRotation = await ctx.engine();
    const result = await rotateMasterKey(engineForRotation.database.db, during);
    expect(result.failed).toBe(0);
    expect(result.rewrapped).toBeGreaterThanOrEqual(2);

    // Rebuilt with the old master key gone: every key still works end to end.
    const after = await gateway({ PORTCULLIS_MASTER_KEY: newMaster });
    token = after.token;
    try {
      expect((await after.app.services.vault.list()).map((k) => [k.name, k.state])).toEqual([
        ['key-1', 'enabled'],
        ['key-2', 'enabled'],
      ]);
      await useEveryKey(after);
      expect(after.rawLogs.join('')).not.toMatch(/cannot be opened/);
    } finally {
      await after.close();
    }
    const rawAfter = await rawDatabase();
    for (const s of [...secrets, token, oldMaster, newMaster]) expect(rawAfter).not.toContain(s);
  });
});
