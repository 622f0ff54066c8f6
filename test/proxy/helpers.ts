/**
 * Shared set-up for the proxy suites: the Anthropic simulator as upstream with real keys in
 * the vault (not demo mode), the gateway listening on 127.0.0.1 port 0, a user with a
 * personal token, and the gateway's log lines captured for inspection.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../src/app.js';
import type { User } from '../../src/auth/users.js';
import { loadConfig } from '../../src/config/index.js';
import { createEngine } from '../../src/engine/index.js';
import type { Engine } from '../../src/engine/index.js';
import type { Simulator, SimulatorOptions } from '../../src/simulator/index.js';
import { buildSimulator } from '../../src/simulator/index.js';
import { baseEnv } from '../helpers/env.js';
import type { DatabaseContext } from '../helpers/env.js';

/** A random secret shaped like an Anthropic API key. */
export const newSecret = (): string => `sk-ant-api03-${randomBytes(40).toString('base64url')}`;

export interface Gateway {
  app: FastifyInstance;
  engine: Engine;
  sim: Simulator;
  /** http://127.0.0.1:PORT of the simulator (the gateway's upstream). */
  simUrl: string;
  /** http://127.0.0.1:PORT of the gateway. */
  url: string;
  /** The upstream secrets in the vault, in the order of `keyNames`. */
  secrets: string[];
  keyNames: string[];
  user: User;
  /** A personal token of `user`. */
  token: string;
  /** Every log line the gateway wrote, parsed. */
  logs: Record<string, unknown>[];
  /** Raw log text, to search for secrets. */
  rawLogs: string[];
  close(): Promise<void>;
}

export interface GatewayOptions {
  /** Upstream keys to add to the vault (named key-1…); 1 by default. */
  keys?: number;
  env?: Record<string, string>;
  simulator?: SimulatorOptions;
  /** Run on this database context instead of a throw-away SQLite file. */
  db?: DatabaseContext;
  /** An already running simulator to use (its `keys` option must accept the secrets). */
  sim?: Simulator;
  simUrl?: string;
  secrets?: string[];
}

let counter = 0;

/** Builds and starts everything; `close()` stops the gateway, the engine and the simulator it started. */
export async function startGateway(options: GatewayOptions = {}): Promise<Gateway> {
  const secrets = options.secrets ?? Array.from({ length: options.keys ?? 1 }, newSecret);
  const ownSim = options.sim === undefined;
  const sim = options.sim ?? (await buildSimulator({ keys: secrets, ...options.simulator }));
  const simUrl = options.simUrl ?? (await sim.listen({ port: 0, host: '127.0.0.1' }));
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-proxy-'));
  const env: Record<string, string> = {
    ...(options.db ? options.db.env() : { ...baseEnv(dir), DATABASE_URL: `sqlite:${join(dir, 'test.db')}` }),
    LOG_LEVEL: 'info',
    ANTHROPIC_BASE_URL: simUrl,
    DEMO_MODE: 'off',
    PORTCULLIS_MASTER_KEY: randomBytes(32).toString('base64'),
    RATE_LIMIT_AUTH_FAILURES_PER_MIN: '0',
    ...options.env,
  };
  const config = loadConfig(env);
  const engine = await createEngine(config);
  const logs: Record<string, unknown>[] = [];
  const rawLogs: string[] = [];
  const app = await buildApp(config, engine, {
    logStream: {
      write(line: string) {
        rawLogs.push(line);
        try {
          logs.push(JSON.parse(line) as Record<string, unknown>);
        } catch {
          // not JSON: kept raw only
        }
      },
    },
  });
  const keyNames: string[] = [];
  for (const [i, secret] of secrets.entries()) {
    const name = `key-${i + 1}`;
    if (!(await app.services.vault.list()).some((k) => k.name === name)) await app.services.vault.add({ name, secret });
    keyNames.push(name);
  }
  await app.listen({ port: 0, host: '127.0.0.1' });
  const address = app.server.address();
  if (!address || typeof address === 'string') throw new Error('no address');
  counter += 1;
  const user = await app.services.users.create({ issuer: 'https://idp.test', subject: `proxy${counter}-${randomBytes(3).toString('hex')}.crypto`, roles: ['member'] });
  const { token } = await app.services.personalTokens.create(user.id, { name: 'sdk' });
  let closed = false;
  return {
    app,
    engine,
    sim,
    simUrl,
    url: `http://127.0.0.1:${address.port}`,
    secrets,
    keyNames,
    user,
    token,
    logs,
    rawLogs,
    async close() {
      if (closed) return;
      closed = true;
      await app.close();
      await engine.close();
      if (ownSim) await sim.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * The usage records (of one request id), straight from the table, once every settlement
 * started so far is written (usage is recorded beside the answer, a moment after it).
 */
export async function usageRows(gw: Gateway, requestId?: string) {
  await gw.app.services.chat.drain();
  let q = gw.engine.database.db.selectFrom('usage_records').selectAll();
  if (requestId !== undefined) q = q.where('request_id', '=', requestId);
  return q.orderBy('created_at').execute();
}

/** A minimal Messages body. */
export function messageBody(text: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { model: 'claude-sonnet-4-6', max_tokens: 256, messages: [{ role: 'user', content: text }], ...extra };
}

/** Waits (bounded) until `check` is true; for settlements that finish after the response ended. */
export async function until(check: () => boolean | Promise<boolean>, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error('condition not met in time');
}
