/** `portcullis users …`: add, list, show, grant, revoke, disable, enable. */
import { Command } from 'commander';
import { UserService } from '../auth/users.js';
import type { User, UserView } from '../auth/users.js';
import { GatewayError } from '../errors/index.js';
import { collect, nonNegativeInt, positiveInt, withAuth, withEngine } from './context.js';
import { print, table, time } from './output.js';

function showText(view: UserView): string {
  const p = view.permissions;
  return [
    `id:                ${view.id}`,
    `subject:           ${view.subject}`,
    `issuer:            ${view.issuer}`,
    `name:              ${view.displayName}`,
    `email:             ${view.email ?? '-'}`,
    `wallet:            ${view.walletAddress ?? '-'}`,
    `status:            ${view.status}`,
    `roles:             ${view.roles.join(', ') || '-'}`,
    `granted models:    ${view.grants.models.join(', ') || '-'}`,
    `granted caps:      ${view.grants.capabilities.join(', ') || '-'}`,
    `models allowed:    ${p.models.join(', ') || '-'}`,
    `capabilities:      ${p.capabilities.join(', ') || '-'}`,
    `max output tokens: ${p.maxOutputTokens ?? 'no cap'}`,
    `rate tier:         ${p.rateTier}`,
    `rate limits:       ${rateLimitsText(view.grants.rateLimits)}`,
    `created:           ${time(view.createdAt)}`,
    `last login:        ${time(view.lastLoginAt)}`,
  ].join('\n');
}

const LIMIT_FLAGS = [
  ['rpm', 'requests per minute'],
  ['rpd', 'requests per day'],
  ['tpm', 'tokens per minute'],
  ['concurrent', 'concurrent streams'],
] as const;
type LimitFlag = (typeof LIMIT_FLAGS)[number][0];

function rateLimitsText(limits: UserView['grants']['rateLimits']): string {
  if (!limits) return 'from the tier';
  return LIMIT_FLAGS.filter(([k]) => limits[k] !== undefined).map(([k]) => `${k}=${limits[k] === 0 ? 'unlimited' : limits[k]}`).join(', ') + ' (own; the rest from the tier)';
}

function listText(users: User[]): string {
  return table(
    users.map((u) => ({ subject: u.subject, status: u.status, issuer: u.issuer, id: u.id, 'last login': time(u.lastLoginAt) })),
    ['subject', 'status', 'issuer', 'id', 'last login'],
  );
}


export function usersCommand(): Command {
  const users = new Command('users').description('manage users, their roles, grants and limits');

  users
    .command('add')
    .description('create a user identified by issuer and subject')
    .requiredOption('--sub <subject>', 'the subject the identity provider gives (a uAuth domain, e.g. alice.crypto)')
    .option('--issuer <url>', 'the OpenID issuer (default: UAUTH_ISSUER)')
    .option('--name <name>', 'display name (default: the subject)')
    .option('--email <email>', 'email address')
    .option('--wallet <address>', 'wallet address')
    .option('--role <role>', 'a role to give (repeatable; default: member)', collect, [])
    .option('--json', 'print JSON')
    .action(async (opts: { sub: string; issuer?: string; name?: string; email?: string; wallet?: string; role: string[]; json?: boolean }) => {
      await withEngine(async ({ config, engine }) => {
        const service = new UserService(engine.database.db);
        const user = await service.create({
          issuer: opts.issuer ?? config.uauthIssuer,
          subject: opts.sub,
          displayName: opts.name,
          email: opts.email ?? null,
          walletAddress: opts.wallet ?? null,
          roles: opts.role.length > 0 ? opts.role : undefined,
        });
        const view = await service.view(user.id);
        print(view, opts, () => `created ${view.subject} (${view.id}) with roles ${view.roles.join(', ')}`);
      });
    });

  users
    .command('list')
    .description('list users')
    .option('--status <status>', 'active or disabled')
    .option('--role <role>', 'only users with this role')
    .option('--limit <n>', 'at most this many', positiveInt, 100)
    .option('--json', 'print JSON')
    .action(async (opts: { status?: string; role?: string; limit: number; json?: boolean }) => {
      if (opts.status && opts.status !== 'active' && opts.status !== 'disabled') {
        throw new GatewayError('invalid_request', `--status: expected active or disabled, got ${opts.status}`);
      }
      await withEngine(async ({ engine }) => {
        const list = await new UserService(engine.database.db).list({
          status: opts.status as 'active' | 'disabled' | undefined,
          role: opts.role,
          limit: opts.limit,
        });
        print(list, opts, () => listText(list));
      });
    });

  users
    .command('show <user>')
    .description('show a user (by subject or id) with roles, grants and effective permissions')
    .option('--issuer <url>', 'disambiguate a subject known to several issuers')
    .option('--json', 'print JSON')
    .action(async (ref: string, opts: { issuer?: string; json?: boolean }) => {
      await withEngine(async ({ engine }) => {
        const service = new UserService(engine.database.db);
        const view = await service.view((await service.resolve(ref, opts.issuer)).id);
        print(view, opts, () => showText(view));
      });
    });

  for (const verb of ['grant', 'revoke'] as const) {
    const command = users
      .command(`${verb} <user>`)
      .description(verb === 'grant' ? 'give roles, models, capabilities or limits' : 'take back roles, models, capabilities or limits')
      .option('--issuer <url>', 'disambiguate a subject known to several issuers')
      .option('--role <role>', 'a role (repeatable)', collect, [])
      .option('--model <pattern>', 'a model glob such as claude-sonnet-* (repeatable)', collect, [])
      .option('--capability <name>', 'manage_users, manage_keys, read_usage or broadcast (repeatable)', collect, []);
    if (verb === 'grant') {
      command.option('--max-output-tokens <n>', 'cap on max_tokens per request', positiveInt).option('--tier <tier>', 'rate-limit tier');
      for (const [flag, what] of LIMIT_FLAGS) command.option(`--${flag} <n>`, `own limit of ${what}, replacing the tier's (0 = unlimited)`, nonNegativeInt);
    } else {
      command.option('--max-output-tokens', 'clear the personal cap on max_tokens').option('--tier', 'clear the personal rate-limit tier');
      for (const [flag, what] of LIMIT_FLAGS) command.option(`--${flag}`, `clear the own limit of ${what} (back to the tier's)`);
    }
    command
      .option('--json', 'print JSON')
      .action(
        async (
          ref: string,
          opts: {
            issuer?: string;
            role: string[];
            model: string[];
            capability: string[];
            maxOutputTokens?: number | true;
            tier?: string | true;
            json?: boolean;
          } & Partial<Record<LimitFlag, number | true>>,
        ) => {
          const limitPatch: Partial<Record<LimitFlag, number | null>> = {};
          for (const [flag] of LIMIT_FLAGS) if (opts[flag] !== undefined) limitPatch[flag] = verb === 'grant' ? (opts[flag] as number) : null;
          const nothing =
            !opts.role.length && !opts.model.length && !opts.capability.length && opts.maxOutputTokens === undefined && opts.tier === undefined && Object.keys(limitPatch).length === 0;
          if (nothing) {
            throw new GatewayError('invalid_request', `nothing to ${verb}: give --role, --model, --capability, --max-output-tokens, --tier, --rpm, --rpd, --tpm or --concurrent`);
          }
          await withEngine(async ({ engine }) => {
            const service = new UserService(engine.database.db);
            const user = await service.resolve(ref, opts.issuer);
            for (const role of opts.role) await (verb === 'grant' ? service.grantRole(user.id, role) : service.revokeRole(user.id, role));
            for (const model of opts.model) await service[verb](user.id, 'model', model);
            for (const cap of opts.capability) await service[verb](user.id, 'capability', cap);
            if (opts.maxOutputTokens !== undefined || opts.tier !== undefined) {
              await service.setLimits(user.id, {
                maxOutputTokens: opts.maxOutputTokens === undefined ? undefined : verb === 'grant' ? (opts.maxOutputTokens as number) : null,
                rateTier: opts.tier === undefined ? undefined : verb === 'grant' ? (opts.tier as string) : null,
              });
            }
            if (Object.keys(limitPatch).length > 0) await service.setRateLimits(user.id, limitPatch);
            const view = await service.view(user.id);
            print(view, opts, () => showText(view));
          });
        },
      );
  }

  for (const verb of ['disable', 'enable'] as const) {
    users
      .command(`${verb} <user>`)
      .description(
        verb === 'disable'
          ? 'stop a user from signing in or using the gateway: their sessions end, their open WebSockets close (running instances: within WS_AUTH_RECHECK_MS)'
          : 'let a disabled user back in (they sign in again)',
      )
      .option('--issuer <url>', 'disambiguate a subject known to several issuers')
      .option('--json', 'print JSON')
      .action(async (ref: string, opts: { issuer?: string; json?: boolean }) => {
        await withAuth(async ({ users: service, auth }) => {
          const user = await service.resolve(ref, opts.issuer);
          if (verb === 'disable') await auth.sessions.disableUser(user.id);
          else await service.setStatus(user.id, 'active');
          const updated = await service.get(user.id);
          print(updated, opts, () => `${updated.subject}: ${updated.status}`);
        });
      });
  }

  return users;
}
