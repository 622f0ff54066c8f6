/**
 * Shared set-up for the WebSocket suites: an app listening on 127.0.0.1 port 0 on a
 * throw-away SQLite database, users and tokens, a `ws` test client, and (until the
 * integrator's chat pipeline lands on main) a ChatPipeline that streams from the simulator.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EventSourceParserStream } from 'eventsource-parser/stream';
import type { FastifyInstance } from 'fastify';
import { WebSocket } from 'ws';
import type { ClientOptions } from 'ws';
import { buildApp } from '../../src/app.js';
import type { User } from '../../src/auth/users.js';
import { loadConfig } from '../../src/config/index.js';
import { createEngine } from '../../src/engine/index.js';
import type { Engine } from '../../src/engine/index.js';
import { GatewayError } from '../../src/errors/index.js';
import type { ChatEvent, ChatPipeline, ChatSummary } from '../../src/chat/pipeline.js';
import { baseEnv } from '../helpers/env.js';

export const PUBLIC_URL = 'http://127.0.0.1:8080';
export const ORIGIN = 'http://127.0.0.1:8080';

export interface WsTestApp {
  app: FastifyInstance;
  engine: Engine;
  /** ws://127.0.0.1:PORT/v1/ws */
  url: string;
  http: string;
  close(): Promise<void>;
}

/** An app on a fresh SQLite database, listening on 127.0.0.1:0. */
export async function startApp(env: Record<string, string> = {}): Promise<WsTestApp> {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-ws-'));
  const config = loadConfig({
    ...baseEnv(dir),
    DATABASE_URL: `sqlite:${join(dir, 'test.db')}`,
    PUBLIC_URL,
    RATE_LIMIT_IP_UPGRADE_PER_MIN: '0',
    RATE_LIMIT_AUTH_FAILURES_PER_MIN: '0',
    ...env,
  });
  const engine = await createEngine(config);
  const app = await buildApp(config, engine);
  await app.listen({ port: 0, host: '127.0.0.1' });
  const address = app.server.address();
  if (!address || typeof address === 'string') throw new Error('no address');
  let closed = false;
  return {
    app,
    engine,
    url: `ws://127.0.0.1:${address.port}/v1/ws`,
    http: `http://127.0.0.1:${address.port}`,
    async close() {
      if (closed) return;
      closed = true;
      await app.close();
      await engine.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

let counter = 0;
export async function makeUser(app: FastifyInstance, roles: string[] = ['member']): Promise<User> {
  counter += 1;
  return app.services.users.create({ issuer: 'https://idp.test', subject: `ws${counter}-${Date.now()}.crypto`, roles });
}

/** A fresh session's access token for the user. */
export async function accessToken(app: FastifyInstance, user: User): Promise<{ token: string; sessionId: string; expiresAt: number }> {
  const issued = await app.services.sessions.start(user.id, { ip: '127.0.0.1', userAgent: 'test', issuer: 'https://idp.test' });
  return { token: issued.accessToken, sessionId: issued.session.id, expiresAt: issued.accessExpiresAt };
}

export interface Frame {
  type: string;
  [key: string]: unknown;
}

/** A `ws` client that queues frames and lets tests await the next matching one. */
export class TestClient {
  readonly frames: Frame[] = [];
  readonly closed: Promise<{ code: number; reason: string }>;
  private waiters: Array<{ match: (f: Frame) => boolean; resolve: (f: Frame) => void }> = [];
  private cursor = 0;

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data) => {
      const frame = JSON.parse(String(data)) as Frame;
      this.frames.push(frame);
      const i = this.waiters.findIndex((w) => w.match(frame));
      if (i !== -1) this.waiters.splice(i, 1)[0]!.resolve(frame);
    });
    this.closed = new Promise((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: String(reason) })));
  }

  /** Opens a connection; rejects with `{status, body}` when the upgrade is refused. */
  static open(url: string, options: ClientOptions & { protocols?: string[] } = {}): Promise<TestClient> {
    const { protocols, ...rest } = options;
    const ws = new WebSocket(url, protocols ?? [], rest);
    const client = new TestClient(ws);
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve(client));
      ws.once('unexpected-response', (_req, res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += String(c)));
        res.on('end', () => reject(Object.assign(new Error(`refused ${res.statusCode}`), { status: res.statusCode, body: JSON.parse(body || '{}'), headers: res.headers })));
      });
      ws.once('error', (err) => reject(err));
    });
  }

  send(frame: unknown): void {
    this.ws.send(typeof frame === 'string' ? frame : JSON.stringify(frame));
  }

  /** The next frame (not yet taken by `next`) matching type or predicate; fails after `timeoutMs`. */
  next(match: string | ((f: Frame) => boolean), timeoutMs = 5_000): Promise<Frame> {
    const fn = typeof match === 'string' ? (f: Frame) => f.type === match : match;
    for (let i = this.cursor; i < this.frames.length; i++) {
      const f = this.frames[i]!;
      if (fn(f)) {
        this.frames.splice(i, 1);
        return Promise.resolve(f);
      }
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no frame matching ${String(match)} within ${timeoutMs} ms; got ${JSON.stringify(this.frames.slice(-3))}`)), timeoutMs);
      this.waiters.push({
        match: fn,
        resolve: (f) => {
          clearTimeout(timer);
          this.frames.splice(this.frames.indexOf(f), 1);
          resolve(f);
        },
      });
    });
  }

  close(): void {
    this.ws.close();
  }
}

/** Resolves with the refusal of an upgrade that must fail. */
export async function refused(url: string, options: Parameters<typeof TestClient.open>[1] = {}): Promise<{ status: number; body: { error: { type: string; code?: string } } }> {
  try {
    const c = await TestClient.open(url, options);
    c.close();
  } catch (err) {
    return err as { status: number; body: { error: { type: string; code?: string } } };
  }
  throw new Error('the upgrade was accepted');
}

/**
 * A ChatPipeline streaming from the simulator over real HTTP/SSE, recording every settled
 * summary in `settled`. Stands in for the integrator's pipeline until it is on main.
 */
export function simulatorPipeline(baseUrl: string): Pick<ChatPipeline, 'start'> & { settled: ChatSummary[] } {
  const settled: ChatSummary[] = [];
  return {
    settled,
    async start({ request, signal }) {
      if (typeof request.model !== 'string') throw new GatewayError('invalid_request', 'model: Field required');
      if (request.model === 'rate-limited') throw new GatewayError('rate_limited', 'Rate limit exceeded', { retryAfterSeconds: 3 });
      const res = await fetch(`${baseUrl}/v1/messages`, {
        method: 'POST',
        headers: { 'x-api-key': 'sk-ant-test', 'anthropic-version': '2023-06-01', 'content-type': 'application/json' },
        body: JSON.stringify({ ...request, stream: true }),
        signal,
      });
      if (!res.ok || !res.body) throw new GatewayError('overloaded', `upstream ${res.status}`);
      const usage = { input_tokens: 0, output_tokens: 0, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 };
      let stopReason: string | null = null;
      let outcome: ChatSummary['outcome'] = 'complete';
      let resolveDone!: (s: ChatSummary) => void;
      const done = new Promise<ChatSummary>((r) => (resolveDone = r));
      const body = res.body;
      async function* events(): AsyncGenerator<ChatEvent> {
        try {
          const stream = body.pipeThrough(new TextDecoderStream()).pipeThrough(new EventSourceParserStream());
          for await (const message of stream) {
            const data = JSON.parse(message.data) as { type: string; message?: { usage?: typeof usage }; usage?: Partial<typeof usage>; delta?: { stop_reason?: string } };
            if (data.type === 'message_start' && data.message?.usage) Object.assign(usage, data.message.usage);
            if (data.type === 'message_delta') {
              Object.assign(usage, data.usage ?? {});
              stopReason = data.delta?.stop_reason ?? stopReason;
            }
            if (data.type === 'error') outcome = 'failed_midstream';
            yield { event: message.event ?? data.type, data };
          }
        } catch (err) {
          outcome = signal.aborted ? 'cancelled' : 'failed_midstream';
          if (!signal.aborted) throw err;
        } finally {
          if (signal.aborted) outcome = outcome === 'complete' && stopReason !== null ? 'complete' : 'cancelled';
          const summary: ChatSummary = { outcome, usage: { ...usage }, stopReason };
          settled.push(summary);
          resolveDone(summary);
        }
      }
      return { events: events(), done };
    },
  };
}

/** The simulator echoes the prompt: `words` words give that many tokens to split into deltas. */
export function chatRequest(text = 'Hello', extra: Record<string, unknown> = {}, words = 120): Record<string, unknown> {
  const prompt = `${text} ${Array.from({ length: words }, (_, i) => `word${i}`).join(' ')}`;
  return { model: 'claude-sonnet-4-5', max_tokens: 4096, messages: [{ role: 'user', content: prompt }], ...extra };
}
