/**
 * The Engine bundles every piece of shared state behind its port, chosen once from the
 * configuration: SQLite + in-process state by default, PostgreSQL + Redis when
 * DATABASE_URL and REDIS_URL say so. Features ask the engine for a port and never
 * learn which implementation they got.
 */
import { Redis } from 'ioredis';
import type { Config } from '../config/index.js';
import type { DatabaseHandle } from '../db/index.js';
import { migrateToLatest, openDatabase, withTimeout } from '../db/index.js';
import type { RateLimitStore } from './ratelimit/index.js';
import { createRateLimitStore } from './ratelimit/index.js';

export interface ReadinessProbe {
  /** Named in the 503 body when it fails, e.g. `database` or `redis`. */
  name: string;
  check(): Promise<void>;
}

export interface Engine {
  kind: 'embedded' | 'distributed';
  database: DatabaseHandle;
  /** Present only when REDIS_URL is set. */
  redis: Redis | undefined;
  /** Sliding-window counters and concurrency leases (Redis when configured). */
  rateLimitStore: RateLimitStore;
  /** Everything /readyz asks, in order. */
  probes: ReadinessProbe[];
  close(): Promise<void>;
}

export interface CreateEngineOptions {
  /** Apply migrations before returning (the server does; `migrate` does it explicitly). */
  migrate?: boolean;
  onWarning?: (message: string, err: Error) => void;
}

export async function createEngine(config: Config, options: CreateEngineOptions = {}): Promise<Engine> {
  const warn = options.onWarning ?? (() => {});
  const database = openDatabase(config.database, { onIdleError: (err) => warn('database connection lost', err) });
  try {
    if (options.migrate ?? true) await migrateToLatest(database, config.database);
  } catch (err) {
    await database.close().catch(() => {});
    throw err;
  }
  const redis = config.redisUrl ? connectRedis(config.redisUrl, warn) : undefined;
  const probes: ReadinessProbe[] = [{ name: 'database', check: () => database.ping(2000) }];
  if (redis) {
    probes.push({
      name: 'redis',
      check: async () => {
        await withTimeout(redis.ping(), 2000, 'redis did not answer');
      },
    });
  }
  const rateLimitStore = createRateLimitStore(config, redis);
  return {
    kind: redis ? 'distributed' : 'embedded',
    database,
    redis,
    rateLimitStore,
    probes,
    async close() {
      await rateLimitStore.close();
      redis?.disconnect();
      await database.close();
    },
  };
}

function connectRedis(url: string, warn: (message: string, err: Error) => void): Redis {
  const redis = new Redis(url, {
    // Fail commands fast while Redis is down instead of queueing them without bound.
    maxRetriesPerRequest: 1,
    enableOfflineQueue: true,
    retryStrategy: (times) => Math.min(times * 200, 2000),
    lazyConnect: false,
  });
  let warned = false;
  redis.on('error', (err) => {
    if (!warned) warn('redis unavailable', err);
    warned = true;
  });
  redis.on('ready', () => {
    warned = false;
  });
  return redis;
}
