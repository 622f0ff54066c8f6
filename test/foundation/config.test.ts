import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, redactUrl } from '../../src/config/index.js';
import { renderConfigurationDoc } from '../../src/config/docs.js';

function errorOf(env: Record<string, string>): string {
  try {
    loadConfig(env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error('expected a ConfigError');
}

describe('configuration', () => {
  it('has working defaults: 127.0.0.1:8080, SQLite under ./data, no Redis', () => {
    const config = loadConfig({});
    expect(config.port).toBe(8080);
    expect(config.host).toBe('127.0.0.1');
    expect(config.database).toEqual({ kind: 'sqlite', path: resolve('data/portcullis.db') });
    expect(config.redisUrl).toBeUndefined();
    expect(config.publicUrl).toBe('http://127.0.0.1:8080');
    expect(config.logLevel).toBe('info');
  });

  it('puts the default SQLite file in DATA_DIR', () => {
    expect(loadConfig({ DATA_DIR: '/tmp/pc-x' }).database).toEqual({ kind: 'sqlite', path: '/tmp/pc-x/portcullis.db' });
  });

  it('selects PostgreSQL from a postgres:// DATABASE_URL, with schema and pool size', () => {
    const config = loadConfig({ DATABASE_URL: 'postgres://u:p@127.0.0.1:5432/db', DATABASE_SCHEMA: 'gw', DATABASE_POOL_SIZE: '5' });
    expect(config.database).toEqual({ kind: 'postgres', url: 'postgres://u:p@127.0.0.1:5432/db', schema: 'gw', poolSize: 5 });
  });

  it('names PORT in one line when it is not a number', () => {
    const message = errorOf({ PORT: 'abc' });
    expect(message).toMatch(/^PORT="abc" is invalid/);
    expect(message).toContain('expected an integer from 0 to 65535');
    expect(message).not.toContain('\n');
  });

  it('refuses out-of-range and unknown enum values, naming the expected form', () => {
    expect(errorOf({ PORT: '70000' })).toMatch(/^PORT=/);
    expect(errorOf({ LOG_LEVEL: 'loud' })).toMatch(/^LOG_LEVEL="loud" is invalid.*one of fatal, error/);
    expect(errorOf({ DATABASE_URL: 'mysql://x' })).toMatch(/^DATABASE_URL=/);
    expect(errorOf({ DATABASE_SCHEMA: 'Bad-Name', DATABASE_URL: 'postgres://127.0.0.1/x' })).toMatch(/^DATABASE_SCHEMA=/);
  });

  it('never echoes a secret value, even when it is the invalid one', () => {
    const message = errorOf({ DATABASE_URL: 'mysql://root:hunter2@db/x' });
    expect(message).not.toContain('hunter2');
    expect(message).toContain('(value hidden)');
    expect(errorOf({ PORTCULLIS_MASTER_KEY: 'c2hvcnQ=' })).not.toContain('c2hvcnQ=');
  });

  it('reads a JSON file named by PORTCULLIS_CONFIG, the environment winning', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pc-config-'));
    const file = join(dir, 'config.json');
    writeFileSync(file, JSON.stringify({ PORT: 9000, HOST: '0.0.0.0' }));
    const config = loadConfig({ PORTCULLIS_CONFIG: file, HOST: '127.0.0.2' });
    expect(config.port).toBe(9000);
    expect(config.host).toBe('127.0.0.2');
    writeFileSync(file, JSON.stringify({ PROT: 1 }));
    expect(errorOf({ PORTCULLIS_CONFIG: file })).toContain('unknown setting PROT');
    writeFileSync(file, '{not json');
    expect(errorOf({ PORTCULLIS_CONFIG: file })).toContain('not valid JSON');
  });

  it('redacts passwords from URLs', () => {
    expect(redactUrl('postgres://app:s3cret@db:5432/x')).toBe('postgres://app:***@db:5432/x');
  });

  it('docs/configuration.md is the generated table (run npm run docs:config)', () => {
    expect(readFileSync('docs/configuration.md', 'utf8')).toBe(renderConfigurationDoc());
  });
});
