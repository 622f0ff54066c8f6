/**
 * Chats over WebSocket. A chat belongs to (user id, chat id), not to the socket that started
 * it: every event goes into the stream buffer with its seq, and sockets receive a chat by
 * subscribing to its stream. When the socket dies mid-stream the chat keeps running and
 * buffering; a new connection of the same user takes it over with `chat.resume`. A chat that
 * nobody claims within WS_RESUME_WINDOW_MS is aborted (usage is still settled).
 *
 * Guarantees: seq counts from 0 per chat; a resuming client receives every entry after
 * `after_seq` exactly once, then the live rest (subscribe first, read the backlog, drop
 * entries with seq ≤ the last delivered); cancel works from any connection of the user
 * (through the bus, so on any instance).
 */
import type { FastifyBaseLogger } from 'fastify';
import type { Bus } from '../engine/bus/index.js';
import type { StreamBuffer, StreamEntry } from '../engine/stream-buffer/index.js';
import { GatewayError, toGatewayError } from '../errors/index.js';
import { newRequestId } from '../http/request-id.js';
import type { ChatPipeline, ChatSummary } from '../chat/pipeline.js';
import type { Connection } from './connection.js';
import type { RealtimeMetrics } from './metrics.js';
import type { ServerFrame } from './protocol.js';

export const CANCEL_TOPIC = 'ws.chat.cancel';
/** A connection (on any instance) took over a chat's stream: its owner stops the claim timer. */
export const CLAIM_TOPIC = 'ws.chat.claim';
/** That connection went away: the owner restarts the claim timer. */
export const RELEASE_TOPIC = 'ws.chat.release';

/** What a survivor needs to settle a chat whose instance died (see orphans.ts). */
export interface ChatRegistration {
  key: string;
  userId: string;
  chatId: string;
  requestId: string;
  model: string;
  sessionId: string | null;
  personalTokenId: string | null;
  startedAt: number;
}

/** Where running chats are recorded with their owning instance (Redis in a cluster). */
export interface ChatRegistry {
  register(chat: ChatRegistration): Promise<void>;
  unregister(key: string): Promise<void>;
}
/** Most chats one connection may run at once. */
export const MAX_CHATS_PER_CONNECTION = 32;

interface RunningChat {
  key: string;
  userId: string;
  chatId: string;
  controller: AbortController;
  /** The connection receiving the stream, if any. */
  attached: Connection | null;
  /**
   * The other instances on which a connection receives the stream (their CLAIM, until their
   * RELEASE): the claim timer runs only when this is empty and no local connection receives
   * it. A set, not a flag: the RELEASE of an instance whose connection died must not cancel
   * the claim of another that took the chat over meanwhile.
   */
  claimedBy: Set<string>;
  claimTimer: NodeJS.Timeout | null;
  finished: Promise<void>;
}

export interface ChatManagerOptions {
  pipeline: () => ChatPipeline | undefined;
  buffer: StreamBuffer;
  bus: Bus;
  resumeWindowMs: number;
  log: FastifyBaseLogger;
  metrics: RealtimeMetrics;
  registry?: ChatRegistry;
  /** This instance's id, sent with the claims it makes on other instances' chats. */
  instanceId: string;
  /**
   * Asked once a chat is known here (so `chat.cancel` finds it) and before it starts: false
   * refuses it (the callee tells the client). The credential check (auth-check.ts).
   */
  admit?: (conn: Connection, chatId: string) => Promise<boolean>;
  /** False while the shared state store (Redis) is unreachable: new chats are refused at once. */
  available?: () => boolean;
}

function chatKey(userId: string, chatId: string): string {
  return `chat:${userId}:${chatId}`;
}

/** A `chat.error` frame for chat `id`: the error as the client may see it, with retry_after_ms when it has one. */
export function errorFrame(id: string, err: unknown): ServerFrame {
  const gateway = toGatewayError(err);
  const frame: ServerFrame = {
    type: 'chat.error',
    id,
    error: { type: gateway.type, message: gateway.expose ? gateway.message : 'Internal server error' },
  };
  const retryAfterMs = gateway.retryAfterMs ?? (gateway.retryAfterSeconds === undefined ? undefined : Math.ceil(gateway.retryAfterSeconds * 1000));
  if (retryAfterMs !== undefined) frame.retry_after_ms = retryAfterMs;
  return frame;
}

/** A failure of the shared state store, as the client should see it. */
function unavailable(err: unknown): GatewayError {
  return new GatewayError('unavailable', 'Chat state store is unavailable; retry shortly', { reason: 'state_store_unavailable', retryAfterSeconds: 2, cause: err });
}

function summaryFrame(id: string, summary: ChatSummary): ServerFrame {
  if (summary.outcome === 'complete' || summary.outcome === 'cancelled') {
    return { type: 'chat.done', id, outcome: summary.outcome, usage: summary.usage, stop_reason: summary.stopReason };
  }
  return { type: 'chat.error', id, error: summary.error ?? { type: 'api_error', message: 'The chat failed' }, usage: summary.usage };
}

export class ChatManager {
  private readonly running = new Map<string, RunningChat>();
  private unsubscribers: (() => void)[] = [];
  /** Chats of other instances whose stream a local connection receives: key → connection. */
  private readonly remote = new Map<string, Connection>();

  constructor(private readonly options: ChatManagerOptions) {}

  async start(): Promise<void> {
    const { bus } = this.options;
    const find = (payload: unknown) => {
      const { userId, chatId } = payload as { userId: string; chatId: string };
      return this.running.get(chatKey(userId, chatId));
    };
    const instanceOf = (payload: unknown) => String((payload as { instanceId?: unknown }).instanceId);
    this.unsubscribers = await Promise.all([
      bus.subscribe(CANCEL_TOPIC, (payload) => find(payload)?.controller.abort()),
      bus.subscribe(CLAIM_TOPIC, (payload) => {
        const chat = find(payload);
        if (!chat) return;
        chat.claimedBy.add(instanceOf(payload));
        if (chat.claimTimer) clearTimeout(chat.claimTimer);
        chat.claimTimer = null;
      }),
      bus.subscribe(RELEASE_TOPIC, (payload) => {
        const chat = find(payload);
        if (!chat || !chat.claimedBy.delete(instanceOf(payload))) return;
        if (chat.attached === null && chat.claimedBy.size === 0) this.armClaimTimer(chat);
      }),
    ]);
  }

  private armClaimTimer(chat: RunningChat): void {
    if (chat.claimTimer) clearTimeout(chat.claimTimer);
    chat.claimTimer = setTimeout(() => {
      if (chat.attached === null && chat.claimedBy.size === 0) chat.controller.abort();
    }, this.options.resumeWindowMs);
    chat.claimTimer.unref();
  }

  get size(): number {
    return this.running.size;
  }

  /** Starts a chat for the connection's user; refusals arrive as `chat.error` frames. */
  async run(conn: Connection, chatId: string, request: Record<string, unknown>): Promise<void> {
    const key = chatKey(conn.meta.userId, chatId);
    if (this.running.has(key)) {
      conn.send({ type: 'chat.error', id: chatId, error: { type: 'invalid_request_error', message: `chat id ${chatId} is already in use` } });
      return;
    }
    if (conn.running.size >= MAX_CHATS_PER_CONNECTION) {
      conn.send({ type: 'chat.error', id: chatId, error: { type: 'rate_limit_error', message: `at most ${MAX_CHATS_PER_CONNECTION} chats at once per connection` }, retry_after_ms: 1000 });
      return;
    }
    if (this.options.available && !this.options.available()) {
      conn.send(errorFrame(chatId, unavailable(null)));
      return;
    }
    const { buffer, resumeWindowMs } = this.options;
    const chat: RunningChat = { key, userId: conn.meta.userId, chatId, controller: new AbortController(), attached: conn, claimedBy: new Set(), claimTimer: null, finished: Promise.resolve() };
    this.running.set(key, chat);
    conn.running.add(chatId);
    conn.meta.inFlight = conn.running.size;
    this.options.metrics.chats.set(this.running.size);
    let resolveFinished!: () => void;
    chat.finished = new Promise((resolve) => (resolveFinished = resolve));
    try {
      // Refused, or the socket closed meanwhile (its chats were detached): nothing starts.
      if (this.options.admit && !(await this.options.admit(conn, chatId))) return;
      if (conn.closeCause !== null) return;
      await buffer.open(key, resumeWindowMs);
      await this.attach(conn, chatId, -1);
      const last = await this.pump(chat, conn, request);
      await buffer.end(key, last, resumeWindowMs);
    } catch (err) {
      // The shared state (Redis) failed: the chat cannot be buffered, so it is refused.
      this.options.log.error({ err, chat_id: chatId }, 'websocket chat failed');
      chat.controller.abort();
      conn.send(errorFrame(chatId, unavailable(err)));
    } finally {
      if (chat.claimTimer) clearTimeout(chat.claimTimer);
      this.running.delete(key);
      await this.options.registry?.unregister(key).catch((err: unknown) => this.options.log.warn({ err, chat_id: chatId }, 'chat registry unavailable'));
      conn.running.delete(chatId);
      conn.meta.inFlight = conn.running.size;
      this.options.metrics.chats.set(this.running.size);
      resolveFinished();
    }
  }

  /** Runs the pipeline, buffering each event; returns the terminal entry. */
  private async pump(chat: RunningChat, conn: Connection, request: Record<string, unknown>): Promise<StreamEntry> {
    const pipeline = this.options.pipeline();
    if (!pipeline) {
      return { seq: 0, frame: { type: 'chat.error', id: chat.chatId, error: { type: 'api_error', message: 'Chat is not available on this server' } } };
    }
    let seq = 0;
    let run;
    const requestId = newRequestId();
    try {
      await this.options.registry?.register({
        key: chat.key,
        userId: chat.userId,
        chatId: chat.chatId,
        requestId,
        model: typeof request.model === 'string' ? request.model.slice(0, 200) : 'unknown',
        sessionId: conn.meta.sessionId,
        personalTokenId: conn.meta.personalTokenId,
        startedAt: Date.now(),
      });
    } catch (err) {
      return { seq, frame: errorFrame(chat.chatId, unavailable(err)) as Record<string, unknown> };
    }
    try {
      run = await pipeline.start({
        auth: conn.auth,
        request,
        requestId,
        signal: chat.controller.signal,
        ip: conn.meta.ip,
        transport: 'ws',
      });
    } catch (err) {
      return { seq, frame: errorFrame(chat.chatId, err) as Record<string, unknown> };
    }
    try {
      for await (const event of run.events) {
        await this.options.buffer.append(chat.key, { seq, frame: { type: 'chat.event', id: chat.chatId, seq, event: event.data } });
        seq += 1;
      }
    } catch (err) {
      // The pipeline reports failures through `done`; an iterator that throws (or a buffer
      // write that failed) is settled there too, once aborted.
      chat.controller.abort();
      this.options.log.warn({ err, chat_id: chat.chatId }, 'chat event stream ended with an error');
    }
    const summary = await run.done;
    return { seq, frame: summaryFrame(chat.chatId, summary) as Record<string, unknown> };
  }

  /**
   * Sends the connection every entry of the chat after `afterSeq`, then the live rest,
   * each exactly once. Resolves false (nothing sent) when the chat's stream is gone.
   */
  async attach(conn: Connection, chatId: string, afterSeq: number): Promise<boolean> {
    const key = chatKey(conn.meta.userId, chatId);
    conn.streams.get(chatId)?.();
    let lastSeq = afterSeq;
    let pending: StreamEntry[] | null = [];
    let stopped = false;
    let unsubscribe: () => void = () => {};
    const stop = () => {
      if (stopped) return;
      stopped = true;
      unsubscribe();
      if (this.remote.get(key) === conn) this.remote.delete(key);
      if (conn.streams.get(chatId) === stop) conn.streams.delete(chatId);
    };
    const deliver = (entry: StreamEntry) => {
      if (stopped || entry.seq <= lastSeq) return;
      lastSeq = entry.seq;
      conn.send(entry.frame);
      if (entry.frame.type !== 'chat.event') stop();
    };
    conn.streams.set(chatId, stop);
    unsubscribe = await this.options.buffer.subscribe(key, (entry) => (pending ? pending.push(entry) : deliver(entry)));
    if (stopped) return false;
    const backlog = await this.options.buffer.read(key, afterSeq);
    if (!backlog) {
      stop();
      return false;
    }
    for (const entry of backlog.entries) deliver(entry);
    const queued = pending;
    pending = null;
    for (const entry of queued) deliver(entry);
    const chat = this.running.get(key);
    if (chat && !stopped) {
      if (chat.attached && chat.attached !== conn) chat.attached.streams.get(chatId)?.();
      chat.attached = conn;
      if (chat.claimTimer) clearTimeout(chat.claimTimer);
      chat.claimTimer = null;
    } else if (!stopped && !backlog.ended) {
      // Running on another instance (or about to end): tell its owner the stream is claimed.
      this.remote.set(key, conn);
      await this.options.bus.publish(CLAIM_TOPIC, { userId: conn.meta.userId, chatId, instanceId: this.options.instanceId }).catch(() => {});
    }
    return true;
  }

  /** `chat.resume`: replays after `afterSeq`, or answers `resume_unavailable`. */
  async resume(conn: Connection, chatId: string, afterSeq: number): Promise<void> {
    if (await this.attach(conn, chatId, afterSeq)) return;
    conn.send({
      type: 'chat.error',
      id: chatId,
      error: { type: 'resume_unavailable', message: `chat ${chatId} cannot be resumed after seq ${afterSeq}: it is unknown, expired or older events were dropped` },
    });
  }

  /** `chat.cancel`: aborts the chat wherever it runs; its stream ends with outcome cancelled. */
  async cancel(conn: Connection, chatId: string): Promise<void> {
    const key = chatKey(conn.meta.userId, chatId);
    if (!this.running.has(key) && !(await this.options.buffer.read(key, Number.MAX_SAFE_INTEGER))) {
      conn.send({ type: 'chat.error', id: chatId, error: { type: 'not_found_error', message: `no chat ${chatId}` } });
      return;
    }
    await this.options.bus.publish(CANCEL_TOPIC, { userId: conn.meta.userId, chatId });
  }

  /** A socket went away: its chats keep running unclaimed until the resume window ends. */
  detach(conn: Connection): void {
    for (const chat of this.running.values()) {
      if (chat.attached !== conn) continue;
      chat.attached = null;
      if (chat.claimedBy.size === 0) this.armClaimTimer(chat);
    }
    for (const [key, holder] of this.remote) {
      if (holder !== conn) continue;
      this.remote.delete(key);
      const [, userId, chatId] = /^chat:([^:]+):(.*)$/.exec(key) ?? [];
      void this.options.bus.publish(RELEASE_TOPIC, { userId, chatId, instanceId: this.options.instanceId }).catch(() => {});
    }
    for (const stop of [...conn.streams.values()]) stop();
  }

  /** Resolves when every running chat has finished, or at `deadline` (epoch ms). */
  async drain(deadline: number): Promise<boolean> {
    const all = Promise.all([...this.running.values()].map((c) => c.finished)).then(() => true);
    const left = deadline - Date.now();
    if (left <= 0) return this.running.size === 0;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), left)));
    const result = await Promise.race([all, late]);
    clearTimeout(timer);
    return result;
  }

  /** Aborts every running chat (shutdown past its deadline) and waits for them to settle. */
  async abortAll(waitMs: number): Promise<void> {
    for (const chat of this.running.values()) chat.controller.abort();
    await this.drain(Date.now() + waitMs);
  }

  async close(): Promise<void> {
    for (const off of this.unsubscribers) off();
    for (const chat of this.running.values()) {
      chat.controller.abort();
      if (chat.claimTimer) clearTimeout(chat.claimTimer);
    }
  }
}
