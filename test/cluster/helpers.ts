/**
 * A 3-instance cluster for the multi-instance suites: gateway processes (`portcullis serve`)
 * on one PostgreSQL schema and one Redis key prefix, Redis reached through a TCP proxy the
 * test can cut, the Anthropic simulator as upstream, and an in-process app on the same
 * database to create users and tokens.
 */
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import pg from 'pg';
import { Redis } from 'ioredis';
import { buildApp } from '../../src/app.js';
import { loadConfig } from '../../src/config/index.js';
import type { Engine } from '../../src/engine/index.js';
import { createEngine } from '../../src/engine/index.js';
import { buildSimulator } from '../../src/simulator/index.js';
import type { Simulator } from '../../src/simulator/index.js';
import { freePort, spawnCli, waitForStatus } from '../helpers/cli.js';
import { baseEnv, uniqueName } from '../helpers/env.js';
import { startTcpProxy } from '../helpers/tcp-proxy.js';
import type { TcpProxy } from '../helpers/tcp-proxy.js';

export interface Instance {
  port: number;
  http: string;
  ws: string;
  child: ChildProcess;
  log: string[];
}

export interface Cluster {
  instances: Instance[];
  admin: FastifyInstance;
  engine: Engine;
  /** The in-process simulator, or null when `upstream` named another one. */
  simulator: Simulator | null;
  redisProxy: TcpProxy;
  schema: string;
  prefix: string;
  close(): Promise<void>;
}

export interface ClusterOptions {
  databaseUrl: string;
  redisUrl: string;
  size: number;
  env?: Record<string, string>;
  simulator?: { deltas: number; deltaDelayMs: number };
  /** An upstream already running (e.g. a simulator in its own process) instead of an in-process one. */
  upstream?: { url: string; apiKey: string };
  /** Instances connect to Redis directly rather than through the cuttable proxy (benchmarks). */
  directRedis?: boolean;
}

export async function startCluster(options: ClusterOptions): Promise<Cluster> {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-cluster-'));
  const schema = uniqueName('cl').toLowerCase();
  const prefix = `${uniqueName('pcl')}:`;
  const apiKey = options.upstream?.apiKey ?? `sk-ant-api03-${randomBytes(24).toString('hex')}`;
  const simulator = options.upstream
    ? null
    : await buildSimulator({ keys: [apiKey], deltas: options.simulator?.deltas ?? 40, deltaDelayMs: options.simulator?.deltaDelayMs ?? 40 });
  const simUrl = options.upstream?.url ?? (await simulator!.listen());
  const redis = new URL(options.redisUrl);
  const redisProxy = await startTcpProxy({ host: redis.hostname, port: Number(redis.port || 6379) });
  const shared: Record<string, string> = {
    ...baseEnv(dir),
    DATABASE_URL: options.databaseUrl,
    DATABASE_SCHEMA: schema,
    REDIS_KEY_PREFIX: prefix,
    PORTCULLIS_MASTER_KEY: randomBytes(32).toString('base64'),
    ANTHROPIC_BASE_URL: simUrl,
    ANTHROPIC_API_KEY: apiKey,
    DEMO_MODE: 'off',
    // One public URL for the whole cluster: it is the issuer of every access token.
    PUBLIC_URL: 'http://127.0.0.1:8080',
    RATE_LIMIT_RPM: '0',
    RATE_LIMIT_TPM: '0',
    RATE_LIMIT_CONCURRENT: '0',
    RATE_LIMIT_IP_UPGRADE_PER_MIN: '0',
    RATE_LIMIT_AUTH_FAILURES_PER_MIN: '0',
    INSTANCE_TTL_MS: '1500',
    SHUTDOWN_TIMEOUT_MS: '5000',
    ...options.env,
  };
  // The in-process app creates the schema (migrations) and the users; it talks to Redis directly.
  const config = loadConfig({ ...shared, REDIS_URL: options.redisUrl });
  const engine = await createEngine(config);
  const admin = await buildApp(config, engine);
  const instances = await Promise.all(
    Array.from({ length: options.size }, async () => {
      const port = await freePort();
      const child = spawnCli(['serve'], { ...shared, PORT: String(port), LOG_LEVEL: 'warn', REDIS_URL: options.directRedis ? options.redisUrl : `redis://127.0.0.1:${redisProxy.port}` });
      const log: string[] = [];
      child.stdout?.on('data', (d: Buffer) => log.push(String(d)));
      child.stderr?.on('data', (d: Buffer) => log.push(String(d)));
      const http = `http://127.0.0.1:${port}`;
      await waitForStatus(`${http}/readyz`, 200, 60_000).catch((err: Error) => {
        throw new Error(`${err.message}\n${log.join('')}`);
      });
      return { port, http, ws: `ws://127.0.0.1:${port}/v1/ws`, child, log };
    }),
  );
  return {
    instances,
    admin,
    engine,
    simulator,
    redisProxy,
    schema,
    prefix,
    async close() {
      await Promise.all(
        instances.map(
          (i) =>
            new Promise<void>((resolve) => {
              if (i.child.exitCode !== null || i.child.signalCode !== null) return resolve();
              i.child.once('exit', () => resolve());
              i.child.kill('SIGKILL');
            }),
        ),
      );
      await admin.close();
      await engine.close();
      await redisProxy.close();
      await simulator?.close();
      const client = new pg.Client({ connectionString: options.databaseUrl });
      await client.connect();
      await client.query(`drop schema if exists "${schema}" cascade`);
      await client.end();
      const r = new Redis(options.redisUrl);
      let cursor = '0';
      let rounds = 0;
      do {
        const [next, keys] = await r.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500);
        if (keys.length) await r.del(...keys);
        cursor = next;
      } while (cursor !== '0' && ++rounds < 1000);
      r.disconnect();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
