/**
 * Reads the configuration once, from the environment and an optional JSON file
 * (`PORTCULLIS_CONFIG`, whose keys are the same variable names; the environment wins).
 * A bad value throws a `ConfigError` whose message is one line naming the variable,
 * what is wrong and the expected form, without echoing secrets.
 */
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { ConfigValues, SettingDefinition, SettingKey } from './schema.js';
import { settings } from './schema.js';

export { settings } from './schema.js';

export interface Config extends Omit<ConfigValues, 'databaseUrl'> {
  databaseUrl: string;
  /** Where the database lives, derived from DATABASE_URL. */
  database: { kind: 'sqlite'; path: string } | { kind: 'postgres'; url: string; schema: string; poolSize: number };
  /** publicUrl, or http://host:port when unset; no trailing slash. */
  publicUrl: string;
}

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

export type Environment = Record<string, string | undefined>;

function readFileSettings(path: string): Environment {
  let raw: string;
  try {
    raw = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`PORTCULLIS_CONFIG: cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    throw new ConfigError(`PORTCULLIS_CONFIG: ${path} is not valid JSON; expected an object of VARIABLE: "value"`);
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new ConfigError(`PORTCULLIS_CONFIG: ${path} must hold a JSON object of VARIABLE: "value"`);
  }
  const known = new Set(Object.values(settings).map((s) => s.env));
  const out: Environment = {};
  for (const [name, value] of Object.entries(parsed)) {
    if (!known.has(name)) throw new ConfigError(`PORTCULLIS_CONFIG: unknown setting ${name} in ${path}`);
    out[name] = typeof value === 'string' ? value : JSON.stringify(value);
  }
  return out;
}

function parseOne<T>(definition: SettingDefinition<T>, raw: string | undefined): T | undefined {
  const value = raw === undefined || raw === '' ? definition.default : raw;
  if (value === undefined) return undefined;
  const result = definition.parser.schema.safeParse(value);
  if (result.success) return result.data;
  const shown = definition.secret ? '(value hidden)' : JSON.stringify(value);
  const problem = result.error.issues[0]?.message ?? 'invalid';
  throw new ConfigError(`${definition.env}=${shown} is invalid (${problem}); expected ${definition.parser.expected}`);
}

export function loadConfig(env: Environment = process.env): Config {
  const fromFile = env.PORTCULLIS_CONFIG ? readFileSettings(env.PORTCULLIS_CONFIG) : {};
  const values = {} as Record<SettingKey, unknown>;
  for (const key of Object.keys(settings) as SettingKey[]) {
    const definition = settings[key] as SettingDefinition<unknown>;
    values[key] = parseOne(definition, env[definition.env] ?? fromFile[definition.env]);
  }
  const v = values as ConfigValues;
  const databaseUrl = v.databaseUrl ?? `sqlite:${join(v.dataDir, 'portcullis.db')}`;
  const database: Config['database'] = databaseUrl.startsWith('sqlite:')
    ? { kind: 'sqlite', path: sqlitePath(databaseUrl) }
    : { kind: 'postgres', url: databaseUrl, schema: v.databaseSchema, poolSize: v.databasePoolSize };
  if (database.kind === 'postgres' && !/^[a-z_][a-z0-9_]{0,62}$/.test(database.schema)) {
    throw new ConfigError(`DATABASE_SCHEMA=${JSON.stringify(database.schema)} is invalid; expected lower-case letters, digits and _`);
  }
  const publicUrl = (v.publicUrl ?? `http://${v.host.includes(':') ? `[${v.host}]` : v.host}:${v.port}`).replace(/\/+$/, '');
  return { ...v, databaseUrl, database, publicUrl };
}

/** `sqlite:./data/x.db`, `sqlite:///abs/x.db` and `sqlite::memory:` to a better-sqlite3 path. */
function sqlitePath(databaseUrl: string): string {
  const rest = databaseUrl.slice('sqlite:'.length).replace(/^\/\/(?=\/)/, '');
  if (rest === ':memory:' || rest === '') return ':memory:';
  return resolve(rest);
}

/** postgres://user:secret@host/db → postgres://user:***@host/db, for messages and logs. */
export function redactUrl(value: string): string {
  try {
    const u = new URL(value);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(unparseable URL)';
  }
}
