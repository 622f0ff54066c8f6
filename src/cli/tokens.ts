/**
 * `portcullis token …` and `portcullis sessions …`: issue access tokens and personal tokens
 * for a user from the command line, list and revoke sessions. Tokens are printed once, to
 * standard output, and never logged.
 */
import { Command, InvalidArgumentError } from 'commander';
import type { SessionInfo } from '../auth/sessions.js';
import { parseDuration } from '../config/parsers.js';
import { collect, withAuth } from './context.js';
import { print, table, time } from './output.js';

function duration(value: string): number {
  const ms = parseDuration(value);
  if (ms === undefined || ms <= 0) throw new InvalidArgumentError(`expected a duration such as 15m, 1h or 30d, got ${JSON.stringify(value)}`);
  return ms;
}

function sessionsText(list: SessionInfo[]): string {
  return table(
    list.map((s) => ({ id: s.id, user: s.userId, issuer: s.issuer, ip: s.ip, created: time(s.createdAt), 'last seen': time(s.lastSeenAt), expires: time(s.expiresAt) })),
    ['id', 'user', 'issuer', 'ip', 'created', 'last seen', 'expires'],
  );
}

export function tokenCommand(): Command {
  const token = new Command('token').description('issue access tokens and personal access tokens');

  token
    .command('issue')
    .description('print an access token for a user (a new session with issuer "cli", no refresh token)')
    .requiredOption('--user <user>', 'subject or user id')
    .option('--issuer <url>', 'disambiguate a subject known to several issuers')
    .option('--ttl <duration>', 'lifetime, at most 24h', duration, 3_600_000)
    .option('--json', 'print JSON')
    .action(async (opts: { user: string; issuer?: string; ttl: number; json?: boolean }) => {
      await withAuth(async ({ users, auth }) => {
        const user = await users.resolve(opts.user, opts.issuer);
        const issued = await auth.sessions.issueAccessOnly(user.id, { ttlMs: opts.ttl, issuer: 'cli' });
        print({ access_token: issued.accessToken, token_type: 'Bearer', expires_at: issued.accessExpiresAt, session_id: issued.session.id }, opts, () => issued.accessToken);
      });
    });

  token
    .command('create-personal')
    .description('create a personal access token (pcl_pat_…) for a user; it is printed once')
    .requiredOption('--user <user>', 'subject or user id')
    .requiredOption('--name <name>', 'what the token is for')
    .option('--issuer <url>', 'disambiguate a subject known to several issuers')
    .option('--expires <duration>', 'lifetime such as 30d (default: no expiry)', duration)
    .option('--model <glob>', 'restrict to models matching this glob (repeatable)', collect, [])
    .option('--json', 'print JSON')
    .action(async (opts: { user: string; name: string; issuer?: string; expires?: number; model: string[]; json?: boolean }) => {
      await withAuth(async ({ users, auth }) => {
        const user = await users.resolve(opts.user, opts.issuer);
        const { token: value, info } = await auth.personalTokens.create(user.id, {
          name: opts.name,
          expiresAt: opts.expires === undefined ? null : Date.now() + opts.expires,
          models: opts.model.length > 0 ? opts.model : null,
        });
        print({ ...info, token: value }, opts, () => value);
      });
    });

  return token;
}

export function sessionsCommand(): Command {
  const sessions = new Command('sessions').description('list and revoke sessions');

  sessions
    .command('list')
    .description('list live sessions (all users, or one)')
    .option('--user <user>', 'subject or user id')
    .option('--issuer <url>', 'disambiguate a subject known to several issuers')
    .option('--json', 'print JSON')
    .action(async (opts: { user?: string; issuer?: string; json?: boolean }) => {
      await withAuth(async ({ users, auth }) => {
        const list = opts.user ? await auth.sessions.list((await users.resolve(opts.user, opts.issuer)).id) : await auth.sessions.listAll();
        print(list, opts, () => sessionsText(list));
      });
    });

  sessions
    .command('revoke <id>')
    .description('end a session: its tokens stop working (other running instances: within seconds)')
    .option('--reason <reason>', 'recorded with the revocation', 'cli_revoked')
    .option('--json', 'print JSON')
    .action(async (id: string, opts: { reason: string; json?: boolean }) => {
      await withAuth(async ({ auth }) => {
        await auth.sessions.revoke(id, opts.reason);
        const session = await auth.sessions.get(id);
        print(session, opts, () => `${id}: revoked (${session?.revokedReason ?? opts.reason})`);
      });
    });

  return sessions;
}
