/**
 * Where the master key ring comes from: PORTCULLIS_MASTER_KEY (current) and
 * PORTCULLIS_MASTER_KEY_PREVIOUS (older keys, still read). Outside production, when no key
 * is configured, one is generated into DATA_DIR/master.key with mode 0600 (demo mode).
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Config } from '../config/index.js';
import { ConfigError } from '../config/index.js';
import type { MasterKeyRing } from './envelope.js';
import { keyRing } from './envelope.js';

export interface LoadedKeyRing {
  ring: MasterKeyRing;
  /** Set when the key was generated or read from the data directory (demo mode). */
  generatedFile?: string;
}

export function loadMasterKeyRing(config: Pick<Config, 'masterKey' | 'masterKeyPrevious' | 'nodeEnv' | 'dataDir'>): LoadedKeyRing {
  const previous = (config.masterKeyPrevious ?? []).map((k, i) => {
    const key = Buffer.from(k, 'base64');
    if (key.length !== 32) throw new ConfigError(`PORTCULLIS_MASTER_KEY_PREVIOUS: entry ${i + 1} (value hidden) is not base64 of 32 bytes`);
    return key;
  });
  if (config.masterKey) return { ring: keyRing(Buffer.from(config.masterKey, 'base64'), previous) };
  if (config.nodeEnv === 'production') {
    throw new ConfigError('PORTCULLIS_MASTER_KEY is required when NODE_ENV=production; expected base64 of 32 random bytes (openssl rand -base64 32)');
  }
  const dir = resolve(config.dataDir);
  const file = join(dir, 'master.key');
  if (!existsSync(file)) {
    mkdirSync(dir, { recursive: true });
    writeFileSync(file, `${randomBytes(32).toString('base64')}\n`, { mode: 0o600, flag: 'wx' });
  }
  chmodSync(file, 0o600);
  const key = Buffer.from(readFileSync(file, 'utf8').trim(), 'base64');
  if (key.length !== 32) throw new ConfigError(`${file} does not hold base64 of 32 bytes; delete it to generate a new one (stored secrets would be lost)`);
  return { ring: keyRing(key, previous), generatedFile: file };
}
