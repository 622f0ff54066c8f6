/**
 * A lost instance's chats (src/realtime/orphans.ts): a survivor settles each one once, with a
 * usage record, unless its own instance recorded it first. The record it looks for must be
 * the chat's own: another user's request sent with the same x-request-id does not count.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import pino from 'pino';
import type { FastifyBaseLogger } from 'fastify';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import { createEngine } from '../../src/engine/index.js';
import type { Engine } from '../../src/engine/index.js';
import { MemoryStreamBuffer } from '../../src/engine/stream-buffer/memory.js';
import type { ChatRegistration } from '../../src/realtime/chats.js';
import { redisChatRegistry, settleOrphans } from '../../src/realtime/orphans.js';
import { UsageLedger } from '../../src/vault/usage.js';
import { baseEnv, describeWithRedis, uniqueName } from '../helpers/env.js';

describeWithRedis('settleOrphans', ({ url, prefix }) => {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-orphans-'));
  let engine: Engine;
  let redis: Redis;
  let usage: UsageLedger;
  const buffer = new MemoryStreamBuffer();
  const log = pino({ level: 'silent' }) as unknown as FastifyBaseLogger;

  beforeAll(async () => {
    engine = await createEngine(loadConfig({ ...baseEnv(dir), DATABASE_URL: `sqlite:${join(dir, 'o.db')}` }));
    redis = new Redis(url);
    usage = new UsageLedger(engine.database.db, { flushIntervalMs: 1 });
  });
  afterAll(async () => {
    redis.disconnect();
    await buffer.close();
    await engine.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const chat = (userId: string, requestId: string): ChatRegistration => ({
    key: uniqueName('chat'), userId, chatId: 'c1', requestId, model: 'claude-sonnet-4-6', sessionId: null, personalTokenId: 'pat_1', startedAt: Date.now(),
  });
  const record = (userId: string, requestId: string) => ({
    requestId, userId, sessionId: null, personalTokenId: null, keyId: null, model: 'claude-sonnet-4-6', stream: true,
    inputTokens: 1, outputTokens: 1, cacheCreationInputTokens: 0, cacheReadInputTokens: 0,
    status: 200, outcome: 'complete' as const, errorType: null, latencyMs: 1, ttfbMs: 1, retries: 0, fallback: null, createdAt: Date.now(),
  });
  const rowsOf = (requestId: string) =>
    engine.database.db.selectFrom('usage_records').select(['user_id', 'outcome', 'error_type']).where('request_id', '=', requestId).orderBy('user_id').execute();

  it("settles a lost chat once, even when another user's request carries its request id; skips one its instance recorded", async () => {
    const dead = uniqueName('ins');
    const deps = { redis, prefix, instanceId: uniqueName('ins'), buffer, usage, db: engine.database.db, resumeWindowMs: 60_000, log };
    const registry = redisChatRegistry({ redis, prefix, instanceId: dead });

    const lost = chat('usr_victim', uniqueName('req'));
    await registry.register(lost);
    await usage.record(record('usr_other', lost.requestId)); // same id, another user's request
    const recorded = chat('usr_done', uniqueName('req'));
    await registry.register(recorded);
    await usage.record(record('usr_done', recorded.requestId)); // its instance settled it before dying

    expect(await settleOrphans(deps, [dead])).toBe(1);
    expect(await rowsOf(lost.requestId)).toEqual([
      { user_id: 'usr_other', outcome: 'complete', error_type: null },
      { user_id: 'usr_victim', outcome: 'error', error_type: 'instance_lost' },
    ]);
    expect(await rowsOf(recorded.requestId)).toEqual([{ user_id: 'usr_done', outcome: 'complete', error_type: null }]);
    // Taken once: a second survivor finds nothing left to settle.
    expect(await settleOrphans(deps, [dead])).toBe(0);
  });

  it('keeps a lost chat whose settlement failed (database unreachable) and settles it on a later pass', async () => {
    const dead = uniqueName('ins');
    let failures = 1;
    const flaky = {
      record: (r: Parameters<UsageLedger['record']>[0]) => (failures-- > 0 ? Promise.reject(new Error('database unreachable')) : usage.record(r)),
    } as unknown as UsageLedger;
    const deps = { redis, prefix, instanceId: uniqueName('ins'), buffer, usage: flaky, db: engine.database.db, resumeWindowMs: 60_000, log, retryMs: 50 };
    const lost = chat('usr_flaky', uniqueName('req'));
    await redisChatRegistry({ redis, prefix, instanceId: dead }).register(lost);
    expect(await settleOrphans(deps, [dead])).toBe(0);
    expect(Object.keys(await redis.hgetall(`${prefix}${dead}`))).toEqual([lost.key]);
    // Registered after the first pass (the instance was only lapsed and runs on): not the retry's business.
    const fresh = chat('usr_fresh', uniqueName('req'));
    await redisChatRegistry({ redis, prefix, instanceId: dead }).register(fresh);
    for (let i = 0; i < 100 && (await rowsOf(lost.requestId)).length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(await rowsOf(lost.requestId)).toEqual([{ user_id: 'usr_flaky', outcome: 'error', error_type: 'instance_lost' }]);
    expect(Object.keys(await redis.hgetall(`${prefix}${dead}`))).toEqual([fresh.key]);
    expect(await rowsOf(fresh.requestId)).toEqual([]);
  });

  it('ends the stream of a lost chat already recorded but not ended (its instance died in between)', async () => {
    const dead = uniqueName('ins');
    const deps = { redis, prefix, instanceId: uniqueName('ins'), buffer, usage, db: engine.database.db, resumeWindowMs: 60_000, log };
    const half = chat('usr_half', uniqueName('req'));
    await redisChatRegistry({ redis, prefix, instanceId: dead }).register(half);
    await buffer.open(half.key, 60_000);
    await buffer.append(half.key, { seq: 0, frame: { type: 'chat.event', id: 'c1', seq: 0, event: { type: 'message_start' } } });
    await usage.record(record('usr_half', half.requestId));
    expect(await settleOrphans(deps, [dead])).toBe(0);
    expect(await rowsOf(half.requestId)).toEqual([{ user_id: 'usr_half', outcome: 'complete', error_type: null }]);
    expect(await buffer.read(half.key, 0)).toMatchObject({ ended: true, entries: [{ seq: 1, frame: { type: 'chat.error' } }] });
  });

  it('ends the stream of a lost chat longer than the buffer holds, so a client resuming it gets its last frame', async () => {
    const dead = uniqueName('ins');
    const small = new MemoryStreamBuffer({ maxEvents: 3 });
    const deps = { redis, prefix, instanceId: uniqueName('ins'), buffer: small, usage, db: engine.database.db, resumeWindowMs: 60_000, log };
    const long = chat('usr_long', uniqueName('req'));
    await redisChatRegistry({ redis, prefix, instanceId: dead }).register(long);
    await small.open(long.key, 60_000);
    for (let seq = 0; seq < 10; seq++) await small.append(long.key, { seq, frame: { type: 'chat.event', id: 'c1', seq, event: { type: 'content_block_delta' } } });
    expect(await small.read(long.key, -1)).toBeNull(); // the oldest were dropped
    expect(await settleOrphans(deps, [dead])).toBe(1);
    expect(await rowsOf(long.requestId)).toEqual([{ user_id: 'usr_long', outcome: 'failed_midstream', error_type: 'instance_lost' }]);
    const resumed = await small.read(long.key, 8);
    expect(resumed).toMatchObject({ ended: true, entries: [{ seq: 9 }, { seq: 10, frame: { type: 'chat.error', id: 'c1' } }] });
    await small.close();
  });
});
