/**
 * What every CLI command that touches state needs: the configuration and an engine,
 * opened once and always closed.
 */
import { InvalidArgumentError } from 'commander';
import { createAuthServices } from '../auth/services.js';
import type { AuthServices } from '../auth/services.js';
import { UserService } from '../auth/users.js';
import type { Config } from '../config/index.js';
import { loadConfig } from '../config/index.js';
import type { Engine } from '../engine/index.js';
import { createEngine } from '../engine/index.js';
import { loadMasterKeyRing } from '../security/master-key.js';
import { cliIo } from './io.js';

export async function withEngine<T>(fn: (ctx: { config: Config; engine: Engine }) => Promise<T>): Promise<T> {
  const config = loadConfig(cliIo().env);
  const engine = await createEngine(config, { migrate: true });
  try {
    return await fn({ config, engine });
  } finally {
    await engine.close();
  }
}

/** `withEngine` with the authentication services (sessions, personal tokens) over its database, wired as the app wires them. */
export async function withAuth<T>(fn: (ctx: { config: Config; engine: Engine; users: UserService; auth: AuthServices }) => Promise<T>): Promise<T> {
  return withEngine(async ({ config, engine }) => {
    const users = new UserService(engine.database.db);
    const auth = createAuthServices({
      config,
      db: engine.database.db,
      users,
      keyRing: loadMasterKeyRing(config).ring,
      log: { warn: (_obj, msg) => console.error(`warning: ${msg}`) },
    });
    return fn({ config, engine, users, auth });
  });
}

/** Commander collector for repeatable options (`--role a --role b`). */
export function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/** Commander parser for a whole number >= 0 (rate limits: 0 = unlimited). */
export function nonNegativeInt(value: string): number {
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(Number(value))) throw new InvalidArgumentError('expected a whole number >= 0');
  return Number(value);
}

/** Commander parser for a positive integer option. */
export function positiveInt(value: string): number {
  if (!/^\d+$/.test(value) || Number(value) < 1) throw new InvalidArgumentError('expected a positive integer');
  return Number(value);
}
