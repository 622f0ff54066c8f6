import { randomBytes } from 'node:crypto';
import { beforeAll, expect, it } from 'vitest';
import { UserService } from '../../src/auth/users.js';
import type { Db } from '../../src/db/index.js';
import { GatewayError } from '../../src/errors/index.js';
import { keyRing } from '../../src/security/envelope.js';
import { UsageLedger } from '../../src/vault/usage.js';
import { kyselyUsageWriter } from '../../src/vault/usage-writer.js';
import { KeyVault } from '../../src/vault/vault.js';
import { describeEachDatabase } from '../helpers/env.js';
import { newSecret, usage } from './fixtures.js';

const DAY = 86_400_000;
const D1 = Date.UTC(2025, 0, 31, 23, 59, 59, 999); // last ms of Jan 31
const D2 = Date.UTC(2025, 1, 1, 0, 0, 0, 0); // first ms of Feb 1

describeEachDatabase('usage ledger', (ctx) => {
  let db: Db;
  let ledger: UsageLedger;
  let alice: string;
  let bob: string;
  let keyA: string;

  beforeAll(async () => {
    db = (await ctx.engine()).database.db;
    ledger = new UsageLedger(db);
    const users = new UserService(db);
    alice = (await users.create({ issuer: 'https://example.test', subject: 'alice.crypto' })).id;
    bob = (await users.create({ issuer: 'https://example.test', subject: 'bob.crypto' })).id;
    const vault = new KeyVault({ db, ring: keyRing(randomBytes(32)), reloadIntervalMs: 0 });
    keyA = (await vault.add({ name: 'key-a', secret: newSecret() })).id;
    const removed = (await vault.add({ name: 'gone', secret: newSecret() })).id;
    await vault.remove('gone');
    const rows = [
      usage({ userId: alice, keyId: keyA, model: 'claude-sonnet-4-5', inputTokens: 100, outputTokens: 10, cacheReadInputTokens: 1000, createdAt: D1 }),
      usage({ userId: alice, keyId: keyA, model: 'claude-haiku-4-5', inputTokens: 5, outputTokens: 1, outcome: 'failed_midstream', stream: true, createdAt: D2 }),
      usage({ userId: bob, keyId: removed, model: 'claude-sonnet-4-5', inputTokens: 7, outputTokens: 3, cacheCreationInputTokens: 50, createdAt: D2 + 1000 }),
      usage({ userId: bob, keyId: null, model: 'claude-sonnet-4-5', inputTokens: 0, outputTokens: 0, outcome: 'error', status: 429, errorType: 'rate_limit_error', createdAt: D2 + DAY }),
      usage({ userId: 'usr_deleted', keyId: keyA, model: 'claude-opus-4-1', inputTokens: 1, outputTokens: 1, outcome: 'cancelled', createdAt: D2 + 2 * DAY }),
    ];
    for (const r of rows) await ledger.record(r);
  });

  it('sums by user (subject), counting requests and errors', async () => {
    const rows = await ledger.summary({ by: 'user' });
    expect(rows.map((r) => [r.group, r.id, r.requests, r.errors])).toEqual([
      ['alice.crypto', alice, 2, 1],
      ['bob.crypto', bob, 2, 1],
      ['usr_deleted', 'usr_deleted', 1, 0],
    ]);
    expect(rows[0]).toMatchObject({ inputTokens: 105, outputTokens: 11, cacheReadInputTokens: 1000, cacheCreationInputTokens: 0, firstAt: D1, lastAt: D2 });
  });

  it('sums by key name, by id for removed keys and (none) without a key', async () => {
    const rows = await ledger.summary({ by: 'key' });
    const byGroup = Object.fromEntries(rows.map((r) => [r.group, r]));
    expect(Object.keys(byGroup).sort()).toEqual(['(none)', 'key-a', expect.stringMatching(/^key_[0-9a-f]{32}$/)]);
    expect(byGroup['key-a']).toMatchObject({ id: keyA, requests: 3, inputTokens: 106, errors: 1 });
    expect(byGroup['(none)']).toMatchObject({ id: null, requests: 1, errors: 1 });
  });

  it('sums by model', async () => {
    const rows = await ledger.summary({ by: 'model' });
    expect(Object.fromEntries(rows.map((r) => [r.group, r.requests]))).toEqual({ 'claude-sonnet-4-5': 3, 'claude-haiku-4-5': 1, 'claude-opus-4-1': 1 });
    expect(rows[0]!.group).toBe('claude-sonnet-4-5'); // most tokens first
  });

  it('buckets by UTC day, oldest first, with the day boundary exact', async () => {
    const rows = await ledger.summary({ by: 'day' });
    expect(rows.map((r) => [r.group, r.requests])).toEqual([
      ['2025-01-31', 1],
      ['2025-02-01', 2],
      ['2025-02-02', 1],
      ['2025-02-03', 1],
    ]);
  });

  it('filters by time range and user', async () => {
    const rows = await ledger.summary({ by: 'day', since: D2, until: D2 + DAY });
    expect(rows.map((r) => [r.group, r.requests])).toEqual([['2025-02-01', 2]]);
    const mine = await ledger.summary({ by: 'model', userId: alice });
    expect(mine.reduce((n, r) => n + r.requests, 0)).toBe(2);
    expect(await ledger.summary({ by: 'user', since: D2 + 10 * DAY })).toEqual([]);
  });

  it('writes a burst in batches of at most 500 rows, every record answered once its batch is in', async () => {
    const sizes: number[] = [];
    const inner = kyselyUsageWriter(db);
    const burst = new UsageLedger(db, { flushIntervalMs: 5, writer: { write: (rows) => (sizes.push(rows.length), inner.write(rows)), close: async () => {} } });
    const ids = Array.from({ length: 1203 }, (_, i) => `req_burst_${String(i).padStart(4, '0')}`);
    await Promise.all(ids.map((requestId) => burst.record(usage({ requestId, userId: bob, createdAt: D2 + 3 * DAY }))));
    expect(sizes).toEqual([500, 500, 203]);
    const written = await db.selectFrom('usage_records').select('request_id').where('request_id', 'like', 'req_burst_%').orderBy('request_id').execute();
    expect(written.map((r) => r.request_id)).toEqual(ids);
    await burst.close();
  });

  it('refuses a malformed record', async () => {
    await expect(ledger.record(usage({ inputTokens: -1 }))).rejects.toBeInstanceOf(GatewayError);
    await expect(ledger.record(usage({ outcome: 'weird' as 'error' }))).rejects.toThrow(/outcome/);
  });
});
