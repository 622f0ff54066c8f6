/**
 * Test environments for every database and Redis the suites run against.
 *
 * SQLite always runs. PostgreSQL runs when TEST_DATABASE_URL is set, each suite in a schema
 * of its own that is dropped afterwards; Redis when TEST_REDIS_URL is set, each suite under
 * its own key prefix. Without the URLs those suites are skipped and say so, unless
 * PORTCULLIS_REQUIRE_SERVICES=1 (CI), where a missing URL is a failure.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { Redis } from 'ioredis';
import { afterAll, describe, it } from 'vitest';
import type { Config, Environment } from '../../src/config/index.js';
import { loadConfig } from '../../src/config/index.js';
import type { Engine } from '../../src/engine/index.js';
import { createEngine } from '../../src/engine/index.js';

export const TEST_DATABASE_URL = process.env.TEST_DATABASE_URL;
export const TEST_REDIS_URL = process.env.TEST_REDIS_URL;
const REQUIRE = process.env.PORTCULLIS_REQUIRE_SERVICES === '1';

export function uniqueName(prefix: string): string {
  return `${prefix}_${Date.now().toString(36)}_${randomBytes(4).toString('hex')}`;
}

/**
 * Settings every test wants: a free port, quiet logs, state in a temporary folder. Every
 * test client comes from 127.0.0.1, so the per-IP sign-in and failed-authentication limits
 * are off unless a test turns them on to test them.
 */
export function baseEnv(dataDir: string): Environment {
  return { PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'silent', NODE_ENV: 'test', DATA_DIR: dataDir, RATE_LIMIT_IP_AUTH_PER_MIN: '0', RATE_LIMIT_AUTH_FAILURES_PER_MIN: '0' };
}

export interface DatabaseContext {
  name: 'sqlite' | 'postgres';
  /** The environment for this suite's database (call inside tests or hooks). */
  env(extra?: Environment): Environment;
  config(extra?: Environment): Config;
  /** An engine on this database; closed after the suite. */
  engine(extra?: Environment): Promise<Engine>;
}

function context(name: 'sqlite' | 'postgres', dbEnv: () => Environment, cleanup: () => Promise<void>): DatabaseContext {
  const dataDir = mkdtempSync(join(tmpdir(), 'portcullis-test-'));
  const engines: Engine[] = [];
  const env = (extra: Environment = {}) => ({ ...baseEnv(dataDir), ...dbEnv(), ...extra });
  afterAll(async () => {
    await Promise.all(engines.map((e) => e.close().catch(() => {})));
    await cleanup();
    rmSync(dataDir, { recursive: true, force: true });
  });
  return {
    name,
    env,
    config: (extra) => loadConfig(env(extra)),
    engine: async (extra) => {
      const engine = await createEngine(loadConfig(env(extra)));
      engines.push(engine);
      return engine;
    },
  };
}

function missing(what: string, variable: string, title: string): void {
  if (REQUIRE) {
    describe(`${title} [${what}]`, () => {
      it(`needs ${variable}`, () => {
        throw new Error(`${variable} is not set but PORTCULLIS_REQUIRE_SERVICES=1`);
      });
    });
  } else {
    describe.skip(`${title} [${what}] skipped: set ${variable} to run it`, () => {
      it('skipped', () => {});
    });
  }
}

/** Runs `body` once against SQLite and once against PostgreSQL (when configured). */
export function describeEachDatabase(title: string, body: (db: DatabaseContext) => void): void {
  describe(`${title} [sqlite]`, () => {
    const file = join(mkdtempSync(join(tmpdir(), 'portcullis-db-')), 'test.db');
    body(context('sqlite', () => ({ DATABASE_URL: `sqlite:${file}` }), async () => rmSync(file, { force: true })));
  });
  if (!TEST_DATABASE_URL) return missing('postgres', 'TEST_DATABASE_URL', title);
  describe(`${title} [postgres]`, () => {
    const schema = uniqueName('t').toLowerCase();
    body(
      context(
        'postgres',
        () => ({ DATABASE_URL: TEST_DATABASE_URL, DATABASE_SCHEMA: schema }),
        async () => {
          const client = new pg.Client({ connectionString: TEST_DATABASE_URL });
          await client.connect();
          await client.query(`drop schema if exists "${schema}" cascade`);
          await client.end();
        },
      ),
    );
  });
}

/** Runs `body` only when Redis is configured, with a unique key prefix for the suite. */
export function describeWithRedis(title: string, body: (redis: { url: string; prefix: string }) => void): void {
  if (!TEST_REDIS_URL) return missing('redis', 'TEST_REDIS_URL', title);
  describe(`${title} [redis]`, () => {
    const prefix = `${uniqueName('ptest')}:`;
    afterAll(async () => {
      const redis = new Redis(TEST_REDIS_URL);
      let cursor = '0';
      let rounds = 0;
      do {
        const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500);
        if (keys.length) await redis.del(...keys);
        cursor = next;
      } while (cursor !== '0' && ++rounds < 10_000);
      redis.disconnect();
    });
    body({ url: TEST_REDIS_URL, prefix });
  });
}
