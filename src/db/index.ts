/**
 * Opens the database named by the configuration and applies migrations.
 *
 * SQLite (better-sqlite3) is the embedded default; PostgreSQL (pg) is for several
 * instances. Both sit behind the same Kysely<Database>, so nothing above this folder
 * knows which one runs.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import SQLite from 'better-sqlite3';
import { Kysely, Migrator, PostgresDialect, SqliteDialect, sql } from 'kysely';
import pg from 'pg';
import type { Config } from '../config/index.js';
import { redactUrl } from '../config/index.js';
import { GatewayError } from '../errors/index.js';
import { isUniqueViolation } from './errors.js';
import { migrations } from './migrations/index.js';
import type { Database } from './types.js';

export type { Database } from './types.js';
export type Db = Kysely<Database>;

export interface DatabaseHandle {
  db: Db;
  dialect: 'sqlite' | 'postgres';
  /** Resolves when the database answers a trivial query within `timeoutMs`. */
  ping(timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

export interface OpenDatabaseOptions {
  /** Called for errors on idle PostgreSQL connections (the server restarted, say). */
  onIdleError?: (err: Error) => void;
}

const INT8_OID = 20;
const NUMERIC_OID = 1700;

export function openDatabase(database: Config['database'], options: OpenDatabaseOptions = {}): DatabaseHandle {
  if (database.kind === 'sqlite') {
    if (database.path !== ':memory:') mkdirSync(dirname(database.path), { recursive: true });
    const sqlite = new SQLite(database.path);
    sqlite.pragma('journal_mode = WAL');
    sqlite.pragma('foreign_keys = ON');
    sqlite.pragma('busy_timeout = 5000');
    const db = new Kysely<Database>({ dialect: new SqliteDialect({ database: sqlite }) });
    return {
      db,
      dialect: 'sqlite',
      ping: async () => {
        await sql`select 1`.execute(db);
      },
      close: () => db.destroy(),
    };
  }
  const pool = new pg.Pool({
    connectionString: database.url,
    max: database.poolSize,
    connectionTimeoutMillis: 3000,
    options: `-c search_path=${database.schema}`,
    // Times and counters are bigint; every value we store fits a double exactly.
    types: {
      getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
        oid === INT8_OID || oid === NUMERIC_OID ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format as 'text')) as typeof pg.types.getTypeParser,
    },
  });
  // A connection can die while idle in the pool or while checked out between queries; pg
  // emits 'error' on the client then, which would crash the process without a listener.
  const onError = (err: Error) => options.onIdleError?.(err);
  pool.on('error', onError);
  pool.on('connect', (client) => client.on('error', onError));
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  return {
    db,
    dialect: 'postgres',
    ping: async (timeoutMs = 2000) => {
      await withTimeout(sql`select 1`.execute(db), timeoutMs, 'database did not answer');
    },
    close: () => db.destroy(),
  };
}

/** Brings the schema up to date; safe to run from several instances at once on PostgreSQL. */
export async function migrateToLatest(handle: DatabaseHandle, database: Config['database']): Promise<string[]> {
  const schema = database.kind === 'postgres' ? database.schema : undefined;
  try {
    if (schema) await sql`create schema if not exists ${sql.id(schema)}`.execute(handle.db);
  } catch (err) {
    // Two instances starting at once both try to create it; one gets a unique violation.
    if (!isUniqueViolation(err)) throw describeConnectionError(err, database);
  }
  const migrator = new Migrator({
    db: handle.db,
    provider: { getMigrations: async () => migrations },
    ...(schema ? { migrationTableSchema: schema } : {}),
  });
  const { error, results } = await migrator.migrateToLatest();
  if (error) throw describeConnectionError(error, database);
  return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
}

/** One line that says which database failed and why, without its password. */
export function describeConnectionError(err: unknown, database: Config['database']): GatewayError {
  const where = database.kind === 'sqlite' ? `SQLite at ${database.path}` : `PostgreSQL at ${redactUrl(database.url)}`;
  const e = err as { code?: string; message?: string };
  const why = e?.code ? `${e.code}${e.message ? `: ${e.message}` : ''}` : (e?.message ?? String(err));
  return new GatewayError('unavailable', `database: cannot use ${where} (${why.replace(/postgres(ql)?:\/\/[^\s]+/g, (m) => redactUrl(m))})`, {
    reason: 'database_unavailable',
    cause: err,
  });
}

export function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
