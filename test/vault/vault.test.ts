import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { afterEach, beforeAll, beforeEach, expect, it } from 'vitest';
import type { Db } from '../../src/db/index.js';
import type { MasterKeyRing } from '../../src/security/envelope.js';
import { keyRing } from '../../src/security/envelope.js';
import { UsageLedger } from '../../src/vault/usage.js';
import type { KeyVaultOptions } from '../../src/vault/vault.js';
import { KeyVault } from '../../src/vault/vault.js';
import { describeEachDatabase } from '../helpers/env.js';
import { newSecret, usage } from './fixtures.js';
import { failure } from '../helpers/errors.js';

const healthy = () => true;
const none = new Set<string>();


describeEachDatabase('key vault', (ctx) => {
  let db: Db;
  let ring: MasterKeyRing;
  const vaults: KeyVault[] = [];
  const vault = async (options: Partial<KeyVaultOptions> = {}) => {
    const v = new KeyVault({ db, ring, reloadIntervalMs: 0, ...options });
    vaults.push(v);
    await v.start();
    return v;
  };

  beforeAll(async () => {
    db = (await ctx.engine()).database.db;
    ring = keyRing(randomBytes(32));
  });
  beforeEach(async () => {
    await db.deleteFrom('upstream_keys').execute();
    await db.deleteFrom('usage_records').execute();
  });
  afterEach(async () => {
    await Promise.all(vaults.splice(0).map((v) => v.close()));
  });

  it('validates names, secrets, weights and models without echoing the secret', async () => {
    const v = await vault();
    const secret = newSecret();
    expect((await failure(v.add({ name: 'Bad Name', secret }))).message).toMatch(/^name:/);
    expect((await failure(v.add({ name: 'ok', secret: '' }))).message).toMatch(/empty/);
    expect((await failure(v.add({ name: 'ok', secret: `${secret} x` }))).message).toMatch(/whitespace/);
    expect((await failure(v.add({ name: 'ok', secret: 'short' }))).message).toMatch(/does not look like an API key/);
    expect((await failure(v.add({ name: 'ok', secret, weight: -1 }))).message).toMatch(/^weight:/);
    expect((await failure(v.add({ name: 'ok', secret, models: ['claude sonnet'] }))).message).toMatch(/^models/);
    const added = await v.add({ name: 'ok', secret, weight: 3, models: ['claude-*'] });
    expect(added).toMatchObject({ name: 'ok', state: 'enabled', weight: 3, models: ['claude-*'], last4: `…${secret.slice(-4)}` });
    expect(added.id).toMatch(/^key_[0-9a-f]{32}$/);
    const dup = await failure(v.add({ name: 'other', secret }));
    expect(dup.status).toBe(409);
    expect(dup.message).not.toContain(secret);
    expect((await failure(v.add({ name: 'ok', secret: newSecret() }))).reason).toBe('key_exists');
    expect(JSON.stringify(await v.list())).not.toContain(secret);
  });

  it('stores neither the secret nor its base64 in any column', async () => {
    const v = await vault();
    const secret = newSecret();
    await v.add({ name: 'raw', secret });
    await v.rotate('raw', newSecret());
    const rows = await db.selectFrom('upstream_keys').selectAll().execute();
    const dump = JSON.stringify(rows);
    for (const form of [secret, Buffer.from(secret).toString('base64'), Buffer.from(secret).toString('base64url'), Buffer.from(secret).toString('hex')]) {
      expect(dump).not.toContain(form.slice(8, 40));
    }
    expect(rows[0]!.previous_sealed).toMatch(/^pe1\./);
  });

  it.runIf(ctx.name === 'sqlite')('leaves no trace of the secret in the SQLite files', async () => {
    const v = await vault();
    const secret = newSecret();
    await v.add({ name: 'file', secret });
    const file = ctx.config().database;
    if (file.kind !== 'sqlite') throw new Error('sqlite expected');
    const files = readdirSync(dirname(file.path)).filter((f) => f.startsWith(basename(file.path)));
    expect(files.length).toBeGreaterThan(0);
    const bytes = Buffer.concat(files.map((f) => readFileSync(join(dirname(file.path), f))));
    for (const form of [secret, Buffer.from(secret).toString('base64'), Buffer.from(secret).toString('base64url')]) {
      expect(bytes.includes(Buffer.from(form.slice(8, 40)))).toBe(false);
    }
    expect(bytes.includes(Buffer.from('upstream_keys'))).toBe(true); // we did read the database
  });

  it('picks by weight, within loose bounds', async () => {
    let seed = 42;
    const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const v = await vault({ random });
    await v.add({ name: 'heavy', secret: newSecret(), weight: 3 });
    await v.add({ name: 'light', secret: newSecret(), weight: 1 });
    await v.add({ name: 'standby', secret: newSecret(), weight: 0 });
    const counts = new Map<string, number>();
    for (let i = 0; i < 2000; i++) {
      const lease = v.pick('claude-sonnet-4-5', none, healthy)!;
      counts.set(lease.name, (counts.get(lease.name) ?? 0) + 1);
      lease.release();
    }
    expect(counts.get('standby')).toBeUndefined();
    const heavy = counts.get('heavy')! / 2000;
    expect(heavy).toBeGreaterThan(0.65);
    expect(heavy).toBeLessThan(0.85);
    expect(v.count()).toBe(3);
  });

  it('filters by model globs, skips excluded and unhealthy keys, and falls back to weight-0 keys', async () => {
    const v = await vault();
    const haiku = await v.add({ name: 'haiku', secret: newSecret(), models: ['claude-haiku-*'] });
    const any = await v.add({ name: 'any', secret: newSecret() });
    const standby = await v.add({ name: 'standby', secret: newSecret(), weight: 0 });
    for (let i = 0; i < 50; i++) {
      const lease = v.pick('claude-opus-4-1', none, healthy)!;
      expect(lease.name).toBe('any');
      lease.release();
    }
    const only = (model: string, exclude: string[], isHealthy: (id: string) => boolean) => {
      const lease = v.pick(model, new Set(exclude), isHealthy);
      lease?.release();
      return lease?.name;
    };
    expect(only('claude-haiku-4-5', [any.id], healthy)).toBe('haiku');
    expect(only('claude-haiku-4-5', [any.id], (id) => id !== haiku.id)).toBe('standby');
    expect(only('claude-opus-4-1', [any.id, standby.id], healthy)).toBeUndefined();
    expect(only('claude-opus-4-1', [], () => false)).toBeUndefined();
    expect(v.count()).toBe(3);
  });

  it('rotation with a lease in flight: new picks get the new secret, the old one lives until release', async () => {
    const v = await vault();
    const old = newSecret();
    const next = newSecret();
    const key = await v.add({ name: 'rot', secret: old });
    const inflight = v.pick('m', none, healthy)!;
    expect(inflight.secret).toBe(old);
    const rotated = await v.rotate('rot', next);
    expect(rotated).toMatchObject({ last4: `…${next.slice(-4)}`, previousLast4: `…${old.slice(-4)}` });
    expect(rotated.previousRetiresAt).toBeGreaterThan(Date.now());
    const fresh = v.pick('m', none, healthy)!;
    expect(fresh.secret).toBe(next);
    expect(fresh.keyId).toBe(key.id);
    expect(inflight.secret).toBe(old);
    expect(v.inFlight().get(key.id)).toBe(2);
    inflight.release();
    inflight.release(); // a second release is ignored
    expect(v.inFlight().get(key.id)).toBe(1);
    fresh.release();
    expect(v.inFlight().get(key.id)).toBe(0);
    expect((await failure(v.rotate('rot', next))).reason).toBe('same_secret');
    expect((await failure(v.rotate('nope', newSecret()))).status).toBe(404);
  });

  it('disable removes a key from picks, enable brings it back, remove deletes it', async () => {
    const v = await vault();
    await v.add({ name: 'only', secret: newSecret() });
    const lease = v.pick('m', none, healthy)!;
    expect((await v.disable('only')).state).toBe('disabled');
    expect(v.pick('m', none, healthy)).toBeUndefined();
    expect(v.count()).toBe(0);
    expect(lease.secret).toMatch(/^sk-ant-/);
    lease.release();
    expect((await v.enable('only')).state).toBe('enabled');
    v.pick('m', none, healthy)!.release();
    await v.remove('only');
    expect(v.count()).toBe(0);
    expect(await v.list()).toEqual([]);
  });

  it('another instance sees changes on reload (shared database)', async () => {
    const a = await vault();
    const b = await vault();
    const secret = newSecret();
    await a.add({ name: 'shared', secret });
    expect(b.count()).toBe(0);
    await b.reload();
    const lease = b.pick('m', none, healthy)!;
    expect(lease.secret).toBe(secret);
    lease.release();
    await a.disable('shared');
    await b.reload();
    expect(b.count()).toBe(0);
  });

  it('skips a key it cannot open and reports it without the secret', async () => {
    const a = await vault();
    const secret = newSecret();
    await a.add({ name: 'sealed-elsewhere', secret });
    const errors: string[] = [];
    const other = new KeyVault({ db, ring: keyRing(randomBytes(32)), reloadIntervalMs: 0, onError: (err, name) => errors.push(`${name}: ${err.message}`) });
    vaults.push(other);
    await other.start();
    expect(other.count()).toBe(0);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(/^sealed-elsewhere: upstream key sealed-elsewhere .* cannot be opened/);
    expect(errors[0]).not.toContain(secret);
  });

  it('lists usage per key and health from the callback', async () => {
    const v = await vault({ healthOf: (id) => (id.length > 0 ? 'healthy' : 'unknown') });
    const k = await v.add({ name: 'used', secret: newSecret() });
    await v.add({ name: 'idle', secret: newSecret() });
    const ledger = new UsageLedger(db);
    await ledger.record(usage({ keyId: k.id, inputTokens: 5, outputTokens: 7, cacheCreationInputTokens: 11, cacheReadInputTokens: 13, createdAt: 1000 }));
    await ledger.record(usage({ keyId: k.id, inputTokens: 1, outputTokens: 0, outcome: 'error', status: 529, createdAt: 2000 }));
    const list = await v.list();
    expect(list.map((k) => k.name)).toEqual(['idle', 'used']);
    expect(list[0]!.usage).toMatchObject({ requests: 0, lastUsedAt: null });
    expect(list[1]!.usage).toEqual({ requests: 2, errors: 1, inputTokens: 6, outputTokens: 7, cacheCreationInputTokens: 11, cacheReadInputTokens: 13, lastUsedAt: 2000 });
    expect(list[1]!.health).toBe('healthy');
  });

  it('importFromEnv adds ANTHROPIC_API_KEY once, by fingerprint', async () => {
    const v = await vault();
    const secret = newSecret();
    expect(await v.importFromEnv({ anthropicApiKey: undefined })).toBe('unset');
    expect(await v.importFromEnv({ anthropicApiKey: secret })).toBe('added');
    expect(v.count()).toBe(1);
    await v.disable('default');
    expect(await v.importFromEnv({ anthropicApiKey: secret })).toBe('present');
    await v.enable('default');
    await v.rotate('default', newSecret());
    expect(await v.importFromEnv({ anthropicApiKey: secret })).toBe('name_taken');
    expect((await v.list()).map((k) => k.name)).toEqual(['default']);
  });

  it('drops the previous secret once its grace period has ended', async () => {
    const v = await vault({ previousGraceMs: 0 });
    await v.add({ name: 'g', secret: newSecret() });
    await v.rotate('g', newSecret());
    await v.reload();
    const row = await db.selectFrom('upstream_keys').selectAll().executeTakeFirstOrThrow();
    expect(row.previous_sealed).toBeNull();
    expect((await v.list())[0]!.previousRetiresAt).toBeNull();
  });
});
