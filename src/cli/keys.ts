/**
 * `portcullis keys …` (the upstream key vault), `portcullis master-key rotate` and
 * `portcullis usage`. Secrets are read from standard input (first line) or, with
 * `--from-env VAR`, from an environment variable; never from argv. Output never holds a
 * secret: keys show as `…abcd`.
 */
import { Command, InvalidArgumentError } from 'commander';
import { UserService } from '../auth/users.js';
import type { Config } from '../config/index.js';
import { parseDuration } from '../config/parsers.js';
import type { Engine } from '../engine/index.js';
import { GatewayError } from '../errors/index.js';
import { loadMasterKeyRing } from '../security/master-key.js';
import { rotateMasterKey } from '../vault/master-key-rotation.js';
import type { UsageGrouping, UsageSummaryRow } from '../vault/usage.js';
import { UsageLedger } from '../vault/usage.js';
import type { KeyView } from '../vault/vault.js';
import { KeyVault } from '../vault/vault.js';
import type { KeyRecord } from '../vault/key-records.js';
import { positiveInt, withEngine } from './context.js';
import { cliIo, readFirstLine } from './io.js';
import { print, table, time } from './output.js';

function vaultFor(config: Config, engine: Engine): KeyVault {
  return new KeyVault({ db: engine.database.db, ring: loadMasterKeyRing(config).ring, reloadIntervalMs: 0 });
}

async function readSecret(fromEnv: string | undefined): Promise<string> {
  if (fromEnv !== undefined) {
    const value = cliIo().env[fromEnv];
    if (value === undefined || value === '') throw new GatewayError('invalid_request', `--from-env: the environment variable ${fromEnv} is not set`);
    return value;
  }
  return readFirstLine();
}

function models(value: string): string[] {
  return value.split(',').map((s) => s.trim()).filter(Boolean);
}

function weight(value: string): number {
  if (!/^\d+$/.test(value) || Number(value) > 1000) throw new InvalidArgumentError('expected an integer from 0 to 1000');
  return Number(value);
}

function keyLine(k: KeyRecord): string {
  return `${k.name} (${k.id}) ${k.state}, secret ${k.last4}, weight ${k.weight}, models ${k.models.join(',') || '*'}`;
}

function listText(keys: KeyView[]): string {
  return table(
    keys.map((k) => ({
      name: k.name,
      secret: k.last4,
      state: k.state,
      weight: String(k.weight),
      models: k.models.join(',') || '*',
      health: String(k.health),
      requests: String(k.usage.requests),
      errors: String(k.usage.errors),
      'tokens in/out': `${k.usage.inputTokens}/${k.usage.outputTokens}`,
      'cache write/read': `${k.usage.cacheCreationInputTokens}/${k.usage.cacheReadInputTokens}`,
      'last used': time(k.usage.lastUsedAt),
      previous: k.previousRetiresAt === null ? '-' : `${k.previousLast4} until ${time(k.previousRetiresAt)}`,
      id: k.id,
    })),
    ['name', 'secret', 'state', 'weight', 'models', 'health', 'requests', 'errors', 'tokens in/out', 'cache write/read', 'last used', 'previous', 'id'],
  );
}

export function keysCommand(): Command {
  const keys = new Command('keys').description('manage the upstream (Anthropic) API keys in the vault');

  keys
    .command('add')
    .description('add a key; the secret is the first line of standard input (or --from-env VAR)')
    .requiredOption('--name <name>', 'a name: 1 to 64 of a-z, 0-9, _ and -')
    .option('--weight <n>', 'share of traffic relative to other keys (0 to 1000; 0 = only when no other key fits)', weight, 1)
    .option('--models <globs>', 'comma-separated model globs this key serves (default: every model)', models)
    .option('--from-env <var>', 'read the secret from this environment variable instead of standard input')
    .option('--json', 'print JSON')
    .action(async (opts: { name: string; weight: number; models?: string[]; fromEnv?: string; json?: boolean }) => {
      const secret = await readSecret(opts.fromEnv);
      await withEngine(async ({ config, engine }) => {
        const key = await vaultFor(config, engine).add({ name: opts.name, secret, weight: opts.weight, models: opts.models ?? [] });
        print(key, opts, () => `added ${keyLine(key)}`);
      });
    });

  keys
    .command('list')
    .description('list keys with last four characters, state, weight, models, usage and health')
    .option('--json', 'print JSON')
    .action(async (opts: { json?: boolean }) => {
      await withEngine(async ({ config, engine }) => {
        const list = await vaultFor(config, engine).list();
        print(list, opts, () => listText(list));
      });
    });

  keys
    .command('rotate <name>')
    .description('replace a key\'s secret (first line of standard input, or --from-env VAR); the old one is kept for a grace period')
    .option('--from-env <var>', 'read the new secret from this environment variable instead of standard input')
    .option('--json', 'print JSON')
    .action(async (name: string, opts: { fromEnv?: string; json?: boolean }) => {
      const secret = await readSecret(opts.fromEnv);
      await withEngine(async ({ config, engine }) => {
        const key = await vaultFor(config, engine).rotate(name, secret);
        print(key, opts, () => `rotated ${keyLine(key)}; keep the previous secret ${key.previousLast4} valid upstream until ${time(key.previousRetiresAt)}`);
      });
    });

  for (const verb of ['disable', 'enable', 'remove'] as const) {
    keys
      .command(`${verb} <name>`)
      .description(verb === 'remove' ? 'delete a key (its usage records stay)' : `${verb} a key`)
      .option('--json', 'print JSON')
      .action(async (name: string, opts: { json?: boolean }) => {
        await withEngine(async ({ config, engine }) => {
          const key = await vaultFor(config, engine)[verb](name);
          print(key, opts, () => (verb === 'remove' ? `removed ${key.name} (${key.id})` : `${key.name}: ${key.state}`));
        });
      });
  }
  return keys;
}

export function masterKeyCommand(): Command {
  const masterKey = new Command('master-key').description('the master key sealing every stored secret');
  masterKey
    .command('rotate')
    .description('re-wrap every stored secret under PORTCULLIS_MASTER_KEY (older keys must be in PORTCULLIS_MASTER_KEY_PREVIOUS); safe to re-run')
    .option('--json', 'print JSON')
    .action(async (opts: { json?: boolean }) => {
      await withEngine(async ({ config, engine }) => {
        const result = await rotateMasterKey(engine.database.db, loadMasterKeyRing(config).ring);
        print(result, opts, () =>
          [
            ...result.columns.map((c) => `${c.table}.${c.column}: ${c.rewrapped} re-wrapped, ${c.current} already current, ${c.skipped} changed meanwhile, ${c.failed.length} failed`),
            result.failed === 0
              ? `every secret is sealed under master key ${result.masterKeyId}; older keys can leave PORTCULLIS_MASTER_KEY_PREVIOUS`
              : `${result.failed} secrets could not be opened (ids in --json); keep the older keys configured`,
          ].join('\n'),
        );
        if (result.failed > 0) throw new GatewayError('internal', `${result.failed} sealed values could not be re-wrapped`);
      });
    });
  return masterKey;
}

function since(value: string): number {
  const ms = parseDuration(value);
  if (ms !== undefined) return Date.now() - ms;
  const at = Date.parse(value);
  if (Number.isNaN(at)) throw new InvalidArgumentError('expected a duration (7d, 12h, 30m) or a date (2025-01-31)');
  return at;
}

function usageText(rows: UsageSummaryRow[], by: UsageGrouping): string {
  return table(
    rows.map((r) => ({
      [by]: r.group,
      requests: String(r.requests),
      errors: String(r.errors),
      input: String(r.inputTokens),
      output: String(r.outputTokens),
      'cache write': String(r.cacheCreationInputTokens),
      'cache read': String(r.cacheReadInputTokens),
      last: time(r.lastAt),
    })),
    [by, 'requests', 'errors', 'input', 'output', 'cache write', 'cache read', 'last'],
  );
}

export function usageCommand(): Command {
  return new Command('usage')
    .description('token usage and requests, grouped by user, key, model or UTC day')
    .option('--by <grouping>', 'user, key, model or day', (v: string) => {
      if (!['user', 'key', 'model', 'day'].includes(v)) throw new InvalidArgumentError('expected user, key, model or day');
      return v as UsageGrouping;
    }, 'user' as UsageGrouping)
    .option('--since <when>', 'a duration back from now (7d, 12h) or a date; default 7d', since)
    .option('--until <when>', 'a duration back from now or a date (exclusive)', since)
    .option('--user <user>', 'only this user (subject or usr_… id)')
    .option('--limit <n>', 'at most this many rows', positiveInt)
    .option('--json', 'print JSON')
    .action(async (opts: { by: UsageGrouping; since?: number; until?: number; user?: string; limit?: number; json?: boolean }) => {
      await withEngine(async ({ engine }) => {
        const db = engine.database.db;
        const userId = opts.user === undefined ? undefined : (await new UserService(db).resolve(opts.user)).id;
        const rows = await new UsageLedger(db).summary({ by: opts.by, since: opts.since ?? Date.now() - 7 * 86_400_000, until: opts.until, userId });
        const shown = opts.limit ? rows.slice(0, opts.limit) : rows;
        print(shown, opts, () => usageText(shown, opts.by));
      });
    });
}
