/**
 * A gateway for the rate-limit HTTP suites: buildApp on its own database, the simulator as
 * upstream with a real key, listening on 127.0.0.1:0. Without Redis the limiter runs on a
 * MemoryRateLimitStore whose clock the test drives, so "wait retry-after seconds" takes no
 * real time.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../src/app.js';
import type { Environment } from '../../src/config/index.js';
import { loadConfig } from '../../src/config/index.js';
import { createEngine } from '../../src/engine/index.js';
import type { Engine } from '../../src/engine/index.js';
import { MemoryRateLimitStore } from '../../src/engine/ratelimit/index.js';
import { baseEnv } from '../helpers/env.js';

export const SIM_KEY = 'sk-sim-ratelimit';
export const MODEL = 'claude-haiku-4-5';

export interface TestGateway {
  app: FastifyInstance;
  engine: Engine;
  url: string;
  /** The limiter's clock (epoch ms); move it forward to let windows slide. Memory store only. */
  clock: { now: number };
  close(): Promise<void>;
}

export interface GatewayOptions {
  simulatorUrl: string;
  env?: Environment;
  /** Use the engine's own store (Redis when REDIS_URL is set) instead of a driven clock. */
  realStore?: boolean;
  /** Full environment replacing baseEnv + SQLite (for shared PostgreSQL). */
  baseEnv?: Environment;
}

export async function startGateway(options: GatewayOptions): Promise<TestGateway> {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-rl-'));
  const config = loadConfig({
    ...(options.baseEnv ?? { ...baseEnv(dir), DATABASE_URL: `sqlite:${join(dir, 'test.db')}` }),
    ANTHROPIC_BASE_URL: options.simulatorUrl,
    ANTHROPIC_API_KEY: SIM_KEY,
    DEMO_MODE: 'off',
    ...options.env,
  });
  const engine = await createEngine(config);
  const clock = { now: Date.now() };
  const store = options.realStore ? undefined : new MemoryRateLimitStore({ clock: () => clock.now });
  const app = await buildApp(config, store ? { ...engine, rateLimitStore: store } : engine);
  await app.listen({ port: 0, host: '127.0.0.1' });
  const address = app.server.address();
  if (!address || typeof address === 'string') throw new Error('no address');
  return {
    app,
    engine,
    url: `http://127.0.0.1:${address.port}`,
    clock,
    async close() {
      await app.close();
      await store?.close();
      await engine.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

let counter = 0;
/** A member and a personal token for them. */
export async function userWithToken(app: FastifyInstance, roles: string[] = ['member']): Promise<{ id: string; token: string }> {
  counter += 1;
  const user = await app.services.users.create({ issuer: 'https://idp.test', subject: `rl${counter}-${Date.now()}.crypto`, roles });
  const { token } = await app.services.personalTokens.create(user.id, { name: 'test' });
  return { id: user.id, token };
}

/** The bytes of a small Messages request. */
export function messagesBody(maxTokens: number, extra: Record<string, unknown> = {}): string {
  return JSON.stringify({ model: MODEL, max_tokens: maxTokens, messages: [{ role: 'user', content: 'hello there' }], ...extra });
}

/** POST /v1/messages with a personal token. */
export function postMessages(url: string, token: string, body: string): Promise<Response> {
  return fetch(`${url}/v1/messages`, {
    method: 'POST',
    headers: { 'x-api-key': token, 'anthropic-version': '2023-06-01', 'content-type': 'application/json' },
    body,
  });
}
