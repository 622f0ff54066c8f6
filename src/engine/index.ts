/**
 * The Engine bundles every piece of shared state behind its port, chosen once from the
 * configuration: SQLite + in-process state by default, PostgreSQL + Redis when
 * DATABASE_URL and REDIS_URL say so. Features ask the engine for a port and never
 * learn which implementation they got.
 */
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import type { Config } from '../config/index.js';
import type { DatabaseHandle } from '../db/index.js';
import { migrateToLatest, openDatabase, withTimeout } from '../db/index.js';
import type { Bus } from './bus/index.js';
import { MemoryBus, RedisBus } from './bus/index.js';
import type { ConnectionDirectory } from './connections/index.js';
import { MemoryConnectionDirectory, RedisConnectionDirectory } from './connections/index.js';
import type { RateLimitStore } from './ratelimit/index.js';
import { createRateLimitStore } from './ratelimit/index.js';
import type { StreamBuffer } from './stream-buffer/index.js';
import { MemoryStreamBuffer, RedisStreamBuffer } from './stream-buffer/index.js';

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
  /** This process's id (`ins_<hex>`), unique in the cluster; owner of its connections and chats. */
  instanceId: string;
  /** Broadcasts, kicks, cancels and stream tails (Redis pub/sub when configured). */
  bus: Bus;
  /** Who is connected where (Redis, cluster-wide, with this instance's heartbeat, when configured). */
  directory: ConnectionDirectory;
  /** Chat events kept for resume (Redis Streams when configured). */
  streamBuffer: StreamBuffer;
  /**
   * Registers a handler called with the ids of instances whose heartbeat expired (they
   * crashed), on exactly one surviving instance; returns an unsubscribe. Never called
   * in the embedded engine.
   */
  onInstanceExpired(handler: (instanceIds: string[]) => void): () => void;
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
  const instanceId = `ins_${randomBytes(6).toString('hex')}`;
  const expiredHandlers = new Set<(ids: string[]) => void>();
  const realtime = createRealtimePorts({ config, redis, instanceId, warn, onExpired: (ids) => expiredHandlers.forEach((h) => h(ids)) });
  return {
    kind: redis ? 'distributed' : 'embedded',
    database,
    redis,
    rateLimitStore,
    instanceId,
    ...realtime,
    onInstanceExpired(handler) {
      expiredHandlers.add(handler);
      return () => expiredHandlers.delete(handler);
    },
    probes,
    async close() {
      await realtime.streamBuffer.close().catch(() => {});
      await realtime.directory.close().catch(() => {});
      await realtime.bus.close().catch(() => {});
      await rateLimitStore.close();
      redis?.disconnect();
      await database.close();
    },
  };
}

interface RealtimePortsOptions {
  config: Pick<Config, 'redisKeyPrefix' | 'instanceTtlMs'>;
  redis: Redis | undefined;
  instanceId: string;
  warn: (message: string, err: Error) => void;
  onExpired: (instanceIds: string[]) => void;
}

/** The bus, directory and stream buffer: in-process, or on Redis shared by every instance. */
function createRealtimePorts(options: RealtimePortsOptions): { bus: Bus; directory: ConnectionDirectory; streamBuffer: StreamBuffer } {
  const { redis, config, warn } = options;
  const onHandlerError = (err: unknown, topic: string) => warn(`bus handler for ${topic} failed`, err as Error);
  if (!redis) {
    const streamBuffer = new MemoryStreamBuffer({ maxEvents: 10_000, onError: (err) => warn('a stream listener failed', err as Error) });
    return { bus: new MemoryBus(onHandlerError), directory: new MemoryConnectionDirectory(), streamBuffer };
  }
  const prefix = config.redisKeyPrefix;
  const bus = new RedisBus({ redis, prefix: `${prefix}bus:`, onHandlerError });
  const directory = new RedisConnectionDirectory({
    redis,
    prefix: `${prefix}cd:`,
    owner: options.instanceId,
    ttlMs: config.instanceTtlMs,
    onOwnerExpired: options.onExpired,
    onError: (err) => warn('instance heartbeat failed', err as Error),
  });
  const streamBuffer = new RedisStreamBuffer({ redis, bus, prefix: `${prefix}sb:`, maxEvents: 10_000, onError: (err) => warn('a stream listener failed', err as Error) });
  return { bus, directory, streamBuffer };
}

function connectRedis(url: string, warn: (message: string, err: Error) => void): Redis {
  const redis = new Redis(url, {
    // Fail commands fast while Redis is down instead of queueing them without bound.
    maxRetriesPerRequest: 1,
    enableOfflineQueue: true,
    retryStrategy: (times) => Math.min(times * 200, 2000),
    lazyConnect: false,
    // Commands issued in the same event-loop turn (rate-limit checks of concurrent requests,
    // stream-buffer writes) go out in one write: far fewer syscalls per request under load.
    // (The bus's subscriber connection turns it off: subscriber mode allows no other command.)
    enableAutoPipelining: true,
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
