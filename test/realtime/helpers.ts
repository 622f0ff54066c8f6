/**
 * Shared set-up for the WebSocket suites: an app listening on 127.0.0.1 port 0 on a
 * throw-away SQLite database, users and tokens, a `ws` test client, and an app whose real
 * chat pipeline has the simulator as its upstream.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { WebSocket } from 'ws';
import type { ClientOptions } from 'ws';
import { buildApp } from '../../src/app.js';
import type { User } from '../../src/auth/users.js';
import { loadConfig } from '../../src/config/index.js';
import { createEngine } from '../../src/engine/index.js';
import type { Engine } from '../../src/engine/index.js';
import type { UsageRecordRow } from '../../src/db/types.js';
import { buildSimulator } from '../../src/simulator/index.js';
import type { Simulator, SimulatorOptions } from '../../src/simulator/index.js';
import { baseEnv } from '../helpers/env.js';

export const PUBLIC_URL = 'http://127.0.0.1:8080';
export const ORIGIN = 'http://127.0.0.1:8080';

export interface WsTestApp {
  app: FastifyInstance;
  engine: Engine;
  /** ws://127.0.0.1:PORT/v1/ws */
  url: string;
  http: string;
  /** Closes the app (graceful shutdown) but keeps the database open for assertions. */
  stopApp(): Promise<void>;
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
  let stopped: Promise<void> | undefined;
  const stopApp = () => (stopped ??= app.close());
  return {
    app,
    engine,
    url: `ws://127.0.0.1:${address.port}/v1/ws`,
    http: `http://127.0.0.1:${address.port}`,
    stopApp,
    async close() {
      if (closed) return;
      closed = true;
      await stopApp();
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

/** The upstream key the chat apps use; the simulator accepts only it. */
export const UPSTREAM_KEY = `sk-ant-api03-${randomBytes(24).toString('hex')}`;

export interface ChatTestApp extends WsTestApp {
  /** The app's upstream, over real HTTP: what it served is in `sim.requests`. */
  sim: Simulator;
  /** The `usage_records` rows of a user, oldest first, once every settlement started so far is written. */
  usageRows(userId: string): Promise<UsageRecordRow[]>;
}

/**
 * An app whose real chat pipeline talks to a simulator of its own (key UPSTREAM_KEY imported
 * from ANTHROPIC_API_KEY, demo mode off), with generous rate limits unless `env` says otherwise.
 */
export async function startChatApp(options: { sim?: SimulatorOptions; env?: Record<string, string> } = {}): Promise<ChatTestApp> {
  const sim = await buildSimulator({ keys: [UPSTREAM_KEY], ...options.sim });
  const simUrl = await sim.listen();
  const t = await startApp({
    ANTHROPIC_BASE_URL: simUrl,
    ANTHROPIC_API_KEY: UPSTREAM_KEY,
    DEMO_MODE: 'off',
    RATE_LIMIT_RPM: '0',
    RATE_LIMIT_RPD: '0',
    RATE_LIMIT_TPM: '0',
    RATE_LIMIT_CONCURRENT: '0',
    ...options.env,
  });
  return {
    ...t,
    sim,
    async usageRows(userId) {
      await t.app.services.chat.drain();
      return t.app.services.engine.database.db.selectFrom('usage_records').selectAll().where('user_id', '=', userId).orderBy('created_at').execute();
    },
    async close() {
      await t.close();
      await sim.close();
    },
  };
}

/** The simulator echoes the prompt: `words` words give that many tokens to split into deltas. */
export function chatRequest(text = 'Hello', extra: Record<string, unknown> = {}, words = 120): Record<string, unknown> {
  const prompt = `${text} ${Array.from({ length: words }, (_, i) => `word${i}`).join(' ')}`;
  return { model: 'claude-sonnet-4-5', max_tokens: 4096, messages: [{ role: 'user', content: prompt }], ...extra };
}
