/**
 * The SQLite usage writer's worker thread (src/vault/usage-writer.ts): batches land in the
 * table through the thread's own connection, a failed batch rejects every record of it and
 * the thread keeps writing, and close() waits for writes in flight.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import type { Engine } from '../../src/engine/index.js';
import { createEngine } from '../../src/engine/index.js';
import { UsageLedger } from '../../src/vault/usage.js';
import { kyselyUsageWriter, sqliteWorkerUsageWriter } from '../../src/vault/usage-writer.js';
import { baseEnv } from '../helpers/env.js';
import { usage } from './fixtures.js';

describe('usage rows written by a worker thread on a SQLite file', () => {
  let dir: string;
  let engine: Engine;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'portcullis-usage-writer-'));
    engine = await createEngine(loadConfig({ ...baseEnv(dir), DATABASE_URL: `sqlite:${join(dir, 'usage.db')}` }));
  });
  afterAll(async () => {
    await engine.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const rows = (requestIds: string[]) =>
    engine.database.db.selectFrom('usage_records').select(['request_id', 'input_tokens']).where('request_id', 'in', requestIds).orderBy('request_id').execute();

  it('commits every record of a batch, rejects a whole failed batch, keeps writing after it, and drains on close', async () => {
    const path = join(dir, 'usage.db');
    const db = engine.database.db;
    const ledger = new UsageLedger(db, { writer: sqliteWorkerUsageWriter(path, kyselyUsageWriter(db)) });

    await Promise.all([ledger.record(usage({ requestId: 'req_w1', inputTokens: 11 })), ledger.record(usage({ requestId: 'req_w2', inputTokens: 12 }))]);
    expect(await rows(['req_w1', 'req_w2'])).toEqual([
      { request_id: 'req_w1', input_tokens: 11 },
      { request_id: 'req_w2', input_tokens: 12 },
    ]);

    // The thread binds values by position: every column lands where it belongs.
    const full = usage({
      requestId: 'req_wfull', userId: 'usr_full', sessionId: 'ses_full', personalTokenId: 'pat_full', keyId: 'key_full', model: 'claude-opus-4-1', stream: true,
      inputTokens: 1, outputTokens: 2, cacheCreationInputTokens: 3, cacheReadInputTokens: 4, status: 529, outcome: 'failed_midstream', errorType: 'overloaded_error',
      latencyMs: 5, ttfbMs: 6, retries: 7, fallback: 'claude-sonnet-4-5', createdAt: 1_700_000_000_123,
    });
    await ledger.record(full);
    const { id, ...written } = await db.selectFrom('usage_records').selectAll().where('request_id', '=', 'req_wfull').executeTakeFirstOrThrow();
    expect(id).toMatch(/^use_[0-9a-f]{32}$/);
    expect(written).toEqual({
      request_id: 'req_wfull', user_id: 'usr_full', session_id: 'ses_full', personal_token_id: 'pat_full', key_id: 'key_full', model: 'claude-opus-4-1', stream: 1,
      input_tokens: 1, output_tokens: 2, cache_creation_input_tokens: 3, cache_read_input_tokens: 4, status: 529, outcome: 'failed_midstream', error_type: 'overloaded_error',
      latency_ms: 5, ttfb_ms: 6, retries: 7, fallback: 'claude-sonnet-4-5', created_at: 1_700_000_000_123,
    });

    // A batch the database refuses (the table is gone) fails as a whole, each record rejected.
    await db.schema.alterTable('usage_records').renameTo('usage_records_away').execute();
    const refused = await Promise.allSettled([ledger.record(usage({ requestId: 'req_w3' })), ledger.record(usage({ requestId: 'req_w4' }))]);
    expect(refused.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    expect(String((refused[0] as PromiseRejectedResult).reason)).toMatch(/usage write failed: .*usage_records/);
    await db.schema.alterTable('usage_records_away').renameTo('usage_records').execute();

    // The thread writes on, and close() returns only once the records still pending are in.
    const pending = [ledger.record(usage({ requestId: 'req_w5', inputTokens: 15 })), ledger.record(usage({ requestId: 'req_w6', inputTokens: 16 }))];
    await ledger.close();
    await Promise.all(pending);
    expect(await rows(['req_w3', 'req_w4', 'req_w5', 'req_w6'])).toEqual([
      { request_id: 'req_w5', input_tokens: 15 },
      { request_id: 'req_w6', input_tokens: 16 },
    ]);
  });
});
