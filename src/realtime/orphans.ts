/**
 * Chats whose instance died. Every running WebSocket chat is registered in Redis under its
 * instance (`PREFIX chats:<instanceId>`: chat key → registration). When an instance's
 * heartbeat expires, exactly one survivor is told (the directory's sweep is one atomic
 * script) and settles that instance's chats here:
 *
 * - it removes each registration once that chat is settled (or found settled), so a chat whose
 *   settlement failed (the database unreachable) is kept and tried again, up to
 *   SETTLE_ATTEMPTS times RETRY_MS apart;
 * - a chat whose stream already ended, or whose request id already has a usage record, was
 *   settled by its own instance before it died: skipped, never counted twice;
 * - otherwise one usage record, outcome `failed_midstream` (or `error` before any event),
 *   with the tokens its buffered events report (message_start / message_delta usage), and
 *   the stream is ended with a `chat.error` so a client resuming anywhere gets a clear answer.
 *
 * What is lost: the upstream key id (not in the events; recorded as null) and tokens the
 * upstream produced after the last buffered event.
 */
import type { FastifyBaseLogger } from 'fastify';
import type { Redis } from 'ioredis';
import type { Db } from '../db/index.js';
import type { StreamBuffer } from '../engine/stream-buffer/index.js';
import type { UsageLedger } from '../vault/usage.js';
import type { ChatRegistration, ChatRegistry } from './chats.js';

/** How far before its registration a chat's usage record is still looked for. */
const CLOCK_SLACK_MS = 60_000;
/** Passes over a lost instance's chats at most, while some fail to settle. */
const SETTLE_ATTEMPTS = 3;
/** Wait before another pass over the chats that failed to settle (OrphanDeps.retryMs overrides it). */
const RETRY_MS = 5_000;

export interface OrphanDeps {
  redis: Redis;
  /** e.g. `portcullis:chats:`. */
  prefix: string;
  instanceId: string;
  buffer: StreamBuffer;
  usage: UsageLedger;
  db: Db;
  resumeWindowMs: number;
  log: FastifyBaseLogger;
  now?: () => number;
  /** Wait before another pass over chats that failed to settle (RETRY_MS). */
  retryMs?: number;
}

/** The Redis chat registry of one instance. */
export function redisChatRegistry(deps: Pick<OrphanDeps, 'redis' | 'prefix' | 'instanceId'>): ChatRegistry {
  const key = `${deps.prefix}${deps.instanceId}`;
  return {
    register: async (chat) => void (await deps.redis.hset(key, chat.key, JSON.stringify(chat))),
    unregister: async (chatKey) => void (await deps.redis.hdel(key, chatKey)),
  };
}

interface Tokens {
  inputTokens: number;
  outputTokens: number;
  cacheCreationInputTokens: number;
  cacheReadInputTokens: number;
}

/** The usage the buffered Anthropic events of a chat report. */
export function tokensFromFrames(frames: Record<string, unknown>[]): Tokens {
  const t: Tokens = { inputTokens: 0, outputTokens: 0, cacheCreationInputTokens: 0, cacheReadInputTokens: 0 };
  const n = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? Math.floor(v) : 0);
  for (const frame of frames) {
    const event = frame.event as { type?: string; message?: { usage?: Record<string, unknown> }; usage?: Record<string, unknown> } | undefined;
    const usage = event?.type === 'message_start' ? event.message?.usage : event?.type === 'message_delta' ? event.usage : undefined;
    if (!usage) continue;
    if (usage.input_tokens !== undefined) t.inputTokens = Math.max(t.inputTokens, n(usage.input_tokens));
    if (usage.output_tokens !== undefined) t.outputTokens = Math.max(t.outputTokens, n(usage.output_tokens));
    if (usage.cache_creation_input_tokens !== undefined) t.cacheCreationInputTokens = Math.max(t.cacheCreationInputTokens, n(usage.cache_creation_input_tokens));
    if (usage.cache_read_input_tokens !== undefined) t.cacheReadInputTokens = Math.max(t.cacheReadInputTokens, n(usage.cache_read_input_tokens));
  }
  return t;
}

/**
 * Settles the chats of instances that died; returns how many were settled in this pass.
 * Chats that failed to settle are tried again later: those chats only (`only`; an instance
 * swept while alive may register new chats meanwhile), `attempt` counting the passes.
 */
export async function settleOrphans(deps: OrphanDeps, deadInstances: string[], attempt = 1, only?: Set<string>): Promise<number> {
  const now = deps.now ?? Date.now;
  let settled = 0;
  for (const dead of deadInstances) {
    const key = `${deps.prefix}${dead}`;
    const all = await deps.redis.hgetall(key);
    const failed = new Set<string>();
    for (const [chatKey, raw] of Object.entries(all)) {
      if (only && !only.has(chatKey)) continue;
      const chat = JSON.parse(raw) as ChatRegistration;
      try {
        if (await settleOne(deps, chat, now())) settled += 1;
        await deps.redis.hdel(key, chatKey);
      } catch (err) {
        failed.add(chatKey);
        deps.log.error({ err, chat_id: chat.chatId, instance: dead, attempt }, 'could not settle the chat of a lost instance');
      }
    }
    if (failed.size > 0 && attempt < SETTLE_ATTEMPTS) {
      // Kept in the registry: a later pass settles them (one already settled is found so and skipped).
      const retry = () => {
        if (deps.redis.status === 'end') return; // shut down meanwhile
        void settleOrphans(deps, [dead], attempt + 1, failed).catch((err: unknown) => deps.log.error({ err, instance: dead }, 'settling the chats of a lost instance failed'));
      };
      setTimeout(retry, deps.retryMs ?? RETRY_MS).unref();
    }
    deps.log.warn({ instance: dead, chats: only ? only.size : Object.keys(all).length, failed: failed.size, attempt }, 'instance lost: its chats were settled as failed');
  }
  return settled;
}

async function settleOne(deps: OrphanDeps, chat: ChatRegistration, at: number): Promise<boolean> {
  // All its events; null when they are not all held (a chat longer than the buffer): then
  // what is known of the newest, so its stream is still ended for clients resuming it.
  const stream = await deps.buffer.read(chat.key, -1);
  const newest = stream ? { seq: stream.entries.at(-1)?.seq ?? -1, ended: stream.ended } : await deps.buffer.last(chat.key);
  if (newest?.ended) return false;
  // Its record, if it was written, is this user's and no older than its registration (the
  // same instance's clock; a minute of slack for a clock stepped back): the (user_id,
  // created_at) index narrows the search instead of reading every usage row (request_id has
  // no index), and another user's request sent with the same x-request-id cannot pass for it.
  const existing = await deps.db
    .selectFrom('usage_records')
    .select('request_id')
    .where('user_id', '=', chat.userId)
    .where('created_at', '>=', chat.startedAt - CLOCK_SLACK_MS)
    .where('request_id', '=', chat.requestId)
    .executeTakeFirst();
  if (existing) {
    // Recorded (by its instance before it died, or by an earlier pass whose end failed): a
    // stream not ended yet still gets its last frame.
    if (newest) await endLost(deps, chat, newest.seq);
    return false;
  }
  const frames = (stream?.entries ?? []).map((e) => e.frame);
  const events = newest ? newest.seq + 1 : 0;
  await deps.usage.record({
    requestId: chat.requestId,
    userId: chat.userId,
    sessionId: chat.sessionId,
    personalTokenId: chat.personalTokenId,
    keyId: null,
    model: chat.model,
    stream: true,
    ...tokensFromFrames(frames),
    status: events > 0 ? 200 : 502,
    outcome: events > 0 ? 'failed_midstream' : 'error',
    errorType: 'instance_lost',
    latencyMs: Math.max(0, at - chat.startedAt),
    ttfbMs: null,
    retries: 0,
    fallback: null,
    createdAt: at,
  });
  if (newest) await endLost(deps, chat, newest.seq);
  return true;
}

/** Ends a lost chat's stream after `lastSeq` with a `chat.error`, so clients resuming anywhere get a last frame. */
function endLost(deps: OrphanDeps, chat: ChatRegistration, lastSeq: number): Promise<void> {
  const frame = { type: 'chat.error', id: chat.chatId, error: { type: 'api_error', message: 'The server running this chat stopped; the chat failed. Start it again.' } };
  return deps.buffer.end(chat.key, { seq: lastSeq + 1, frame }, deps.resumeWindowMs);
}
