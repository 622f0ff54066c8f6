/**
 * Users and their permissions in the database. A user is identified by (issuer, subject):
 * the OpenID issuer that vouched for them and the subject it gave (a uAuth domain such as
 * `alice.crypto`). Every function here fails with a GatewayError naming what is wrong.
 */
import { randomUUID } from 'node:crypto';
import type { Db } from '../db/index.js';
import { isForeignKeyViolation, isUniqueViolation } from '../db/errors.js';
import type { RoleRow, UserRow } from '../db/types.js';
import { GatewayError } from '../errors/index.js';
import { tierOverrideSchema } from '../ratelimit/tiers.js';
import type { Capability, Permissions, RateLimitOverride, RoleDefinition } from './permissions.js';
import { effectivePermissions, isCapability } from './permissions.js';

export interface User {
  id: string;
  issuer: string;
  subject: string;
  displayName: string;
  email: string | null;
  walletAddress: string | null;
  status: 'active' | 'disabled';
  createdAt: number;
  updatedAt: number;
  lastLoginAt: number | null;
}

/** A user with their roles, personal grants and what those add up to. */
export interface UserView extends User {
  roles: string[];
  grants: { models: string[]; capabilities: Capability[]; maxOutputTokens: number | null; rateTier: string | null; rateLimits: RateLimitOverride | null };
  permissions: Permissions;
}

export interface NewUser {
  issuer: string;
  subject: string;
  displayName?: string;
  email?: string | null;
  walletAddress?: string | null;
  /** Defaults to `['member']`. */
  roles?: string[];
}

export interface LoginClaims {
  issuer: string;
  subject: string;
  displayName?: string | null;
  email?: string | null;
  walletAddress?: string | null;
}

export interface UserFilter {
  status?: 'active' | 'disabled';
  role?: string;
  limit?: number;
  offset?: number;
}

export type GrantKind = 'model' | 'capability';

/** A change to a user's own rate limits: a number sets that limit (0 = unlimited), null clears it. */
export type RateLimitPatch = Partial<Record<keyof RateLimitOverride, number | null>>;

const RATE_LIMIT_NAMES = ['rpm', 'rpd', 'tpm', 'concurrent'] as const;

/** The stored JSON, or null; a corrupt value reads as "no override" rather than failing sign-in. */
function parseRateLimits(text: string | null): RateLimitOverride | null {
  if (text === null) return null;
  try {
    const parsed = tierOverrideSchema.safeParse(JSON.parse(text));
    return parsed.success && Object.keys(parsed.data).length > 0 ? parsed.data : null;
  } catch {
    return null;
  }
}

function toUser(row: UserRow): User {
  return {
    id: row.id,
    issuer: row.issuer,
    subject: row.subject,
    displayName: row.display_name,
    email: row.email,
    walletAddress: row.wallet_address,
    status: row.status,
    createdAt: Number(row.created_at),
    updatedAt: Number(row.updated_at),
    lastLoginAt: row.last_login_at === null ? null : Number(row.last_login_at),
  };
}

function toRole(row: RoleRow): RoleDefinition {
  return {
    name: row.name,
    capabilities: (JSON.parse(row.capabilities) as string[]).filter(isCapability),
    models: JSON.parse(row.models) as string[],
    maxOutputTokens: row.max_output_tokens,
    rateTier: row.rate_tier,
  };
}

export class UserService {
  constructor(private readonly db: Db) {}

  async create(input: NewUser): Promise<User> {
    const subject = input.subject.trim();
    const issuer = input.issuer.trim();
    if (!subject) throw new GatewayError('invalid_request', 'subject: must not be empty', { reason: 'invalid_subject' });
    if (!issuer) throw new GatewayError('invalid_request', 'issuer: must not be empty', { reason: 'invalid_issuer' });
    const roles = input.roles ?? ['member'];
    await this.requireRoles(roles);
    const now = Date.now();
    const id = `usr_${randomUUID().replaceAll('-', '')}`;
    try {
      await this.db.transaction().execute(async (trx) => {
        await trx
          .insertInto('users')
          .values({
            id,
            issuer,
            subject,
            display_name: input.displayName?.trim() || subject,
            email: input.email ?? null,
            wallet_address: input.walletAddress ?? null,
            status: 'active',
            max_output_tokens: null,
            rate_tier: null,
            rate_limits: null,
            created_at: now,
            updated_at: now,
            last_login_at: null,
          })
          .execute();
        for (const role of new Set(roles)) await trx.insertInto('user_roles').values({ user_id: id, role, created_at: now }).execute();
      });
    } catch (err) {
      if (isUniqueViolation(err)) {
        throw new GatewayError('conflict', `A user ${subject} from ${issuer} already exists`, { reason: 'user_exists' });
      }
      throw err;
    }
    return this.get(id);
  }

  /**
   * Creates the user on first sign-in (as a member) or refreshes their claims on later
   * ones, and stamps last_login_at. A disabled user stays disabled.
   */
  async recordLogin(claims: LoginClaims): Promise<User> {
    const existing = await this.db
      .selectFrom('users')
      .selectAll()
      .where('issuer', '=', claims.issuer)
      .where('subject', '=', claims.subject)
      .executeTakeFirst();
    const now = Date.now();
    if (!existing) {
      try {
        const user = await this.create({
          issuer: claims.issuer,
          subject: claims.subject,
          displayName: claims.displayName ?? undefined,
          email: claims.email ?? null,
          walletAddress: claims.walletAddress ?? null,
        });
        await this.db.updateTable('users').set({ last_login_at: now }).where('id', '=', user.id).execute();
        return { ...user, lastLoginAt: now };
      } catch (err) {
        // Two first logins at once: the other one created the row; fall through to update.
        if (!(err instanceof GatewayError && err.reason === 'user_exists')) throw err;
        return this.recordLogin(claims);
      }
    }
    await this.db
      .updateTable('users')
      .set({
        display_name: claims.displayName?.trim() || existing.display_name,
        email: claims.email ?? existing.email,
        wallet_address: claims.walletAddress ?? existing.wallet_address,
        last_login_at: now,
        updated_at: now,
      })
      .where('id', '=', existing.id)
      .execute();
    return this.get(existing.id);
  }

  async findById(id: string): Promise<User | undefined> {
    const row = await this.db.selectFrom('users').selectAll().where('id', '=', id).executeTakeFirst();
    return row ? toUser(row) : undefined;
  }

  async get(id: string): Promise<User> {
    const user = await this.findById(id);
    if (!user) throw new GatewayError('not_found', `No user with id ${id}`, { reason: 'user_not_found' });
    return user;
  }

  /**
   * Finds a user by id, or by subject (and issuer, when several issuers share a subject).
   * Fails with not_found, or conflict when the subject is ambiguous.
   */
  async resolve(ref: string, issuer?: string): Promise<User> {
    if (ref.startsWith('usr_') && !issuer) {
      const byId = await this.findById(ref);
      if (byId) return byId;
    }
    let query = this.db.selectFrom('users').selectAll().where('subject', '=', ref);
    if (issuer) query = query.where('issuer', '=', issuer);
    const rows = await query.limit(2).execute();
    if (rows.length === 0) {
      throw new GatewayError('not_found', `No user ${ref}${issuer ? ` from ${issuer}` : ''}`, { reason: 'user_not_found' });
    }
    if (rows.length > 1) {
      throw new GatewayError('conflict', `Several users have the subject ${ref}; name the issuer too`, { reason: 'ambiguous_subject' });
    }
    return toUser(rows[0]!);
  }

  async list(filter: UserFilter = {}): Promise<User[]> {
    let query = this.db.selectFrom('users').selectAll('users');
    if (filter.status) query = query.where('users.status', '=', filter.status);
    if (filter.role) {
      query = query.where((eb) =>
        eb.exists(eb.selectFrom('user_roles').select('user_roles.user_id').whereRef('user_roles.user_id', '=', 'users.id').where('user_roles.role', '=', filter.role!)),
      );
    }
    const rows = await query
      .orderBy('users.created_at')
      .orderBy('users.id')
      .limit(Math.min(filter.limit ?? 100, 1000))
      .offset(filter.offset ?? 0)
      .execute();
    return rows.map(toUser);
  }

  async setStatus(id: string, status: 'active' | 'disabled'): Promise<User> {
    await this.get(id);
    await this.db.updateTable('users').set({ status, updated_at: Date.now() }).where('id', '=', id).execute();
    return this.get(id);
  }

  async grantRole(id: string, role: string): Promise<void> {
    await this.get(id);
    await this.requireRoles([role]);
    try {
      await this.db.insertInto('user_roles').values({ user_id: id, role, created_at: Date.now() }).execute();
    } catch (err) {
      if (!isUniqueViolation(err)) throw err; // already has it: granting is idempotent
    }
  }

  async revokeRole(id: string, role: string): Promise<void> {
    await this.get(id);
    await this.requireRoles([role]);
    await this.db.deleteFrom('user_roles').where('user_id', '=', id).where('role', '=', role).execute();
  }

  async grant(id: string, kind: GrantKind, value: string): Promise<void> {
    await this.get(id);
    validateGrant(kind, value);
    try {
      await this.db.insertInto('user_grants').values({ user_id: id, kind, value, created_at: Date.now() }).execute();
    } catch (err) {
      if (isForeignKeyViolation(err)) throw new GatewayError('not_found', `No user with id ${id}`, { reason: 'user_not_found' });
      if (!isUniqueViolation(err)) throw err;
    }
  }

  async revoke(id: string, kind: GrantKind, value: string): Promise<void> {
    await this.get(id);
    await this.db.deleteFrom('user_grants').where('user_id', '=', id).where('kind', '=', kind).where('value', '=', value).execute();
  }

  /** Sets (or with null, clears) the user's own limits; undefined leaves one as it is. */
  async setLimits(id: string, limits: { maxOutputTokens?: number | null; rateTier?: string | null }): Promise<void> {
    await this.get(id);
    if (limits.maxOutputTokens != null && (!Number.isInteger(limits.maxOutputTokens) || limits.maxOutputTokens < 1)) {
      throw new GatewayError('invalid_request', 'max_output_tokens: expected a positive integer', { reason: 'invalid_limit' });
    }
    if (limits.rateTier != null && !/^[a-z0-9_-]{1,32}$/.test(limits.rateTier)) {
      throw new GatewayError('invalid_request', 'rate_tier: expected lower-case letters, digits, - or _', { reason: 'invalid_limit' });
    }
    const patch: { max_output_tokens?: number | null; rate_tier?: string | null; updated_at: number } = { updated_at: Date.now() };
    if (limits.maxOutputTokens !== undefined) patch.max_output_tokens = limits.maxOutputTokens;
    if (limits.rateTier !== undefined) patch.rate_tier = limits.rateTier;
    await this.db.updateTable('users').set(patch).where('id', '=', id).execute();
  }

  /**
   * Changes the user's own numeric rate limits (requests/minute, /day, tokens/minute,
   * concurrent streams), merged into what is set: a number sets one (0 = unlimited), null
   * clears it back to the tier's. Returns what is now set (null: nothing, the tier rules).
   * Takes effect on each instance within USER_CACHE_MS (authenticate's user cache).
   */
  async setRateLimits(id: string, patch: RateLimitPatch): Promise<RateLimitOverride | null> {
    const row = await this.db.selectFrom('users').select('rate_limits').where('id', '=', id).executeTakeFirst();
    if (!row) throw new GatewayError('not_found', `No user with id ${id}`, { reason: 'user_not_found' });
    const next: Record<string, number> = { ...(parseRateLimits(row.rate_limits) ?? {}) };
    for (const name of RATE_LIMIT_NAMES) {
      const value = patch[name];
      if (value === undefined) continue;
      if (value === null) {
        delete next[name];
        continue;
      }
      if (!Number.isSafeInteger(value) || value < 0) {
        throw new GatewayError('invalid_request', `${name}: expected a whole number >= 0 (0 = unlimited)`, { reason: 'invalid_limit' });
      }
      next[name] = value;
    }
    const stored = Object.keys(next).length > 0 ? JSON.stringify(next) : null;
    await this.db.updateTable('users').set({ rate_limits: stored, updated_at: Date.now() }).where('id', '=', id).execute();
    return parseRateLimits(stored);
  }

  async roles(): Promise<RoleDefinition[]> {
    const rows = await this.db.selectFrom('roles').selectAll().orderBy('name').execute();
    return rows.map(toRole);
  }

  async permissions(id: string): Promise<Permissions> {
    return (await this.view(id)).permissions;
  }

  async view(id: string): Promise<UserView> {
    const row = await this.db.selectFrom('users').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row) throw new GatewayError('not_found', `No user with id ${id}`, { reason: 'user_not_found' });
    const [roleRows, grantRows] = await Promise.all([
      this.db.selectFrom('roles').innerJoin('user_roles', 'user_roles.role', 'roles.name').selectAll('roles').where('user_roles.user_id', '=', id).orderBy('roles.name').execute(),
      this.db.selectFrom('user_grants').select(['kind', 'value']).where('user_id', '=', id).orderBy('value').execute(),
    ]);
    const grants = {
      models: grantRows.filter((g) => g.kind === 'model').map((g) => g.value),
      capabilities: grantRows.filter((g) => g.kind === 'capability').map((g) => g.value).filter(isCapability),
      maxOutputTokens: row.max_output_tokens,
      rateTier: row.rate_tier,
      rateLimits: parseRateLimits(row.rate_limits),
    };
    const roles = roleRows.map(toRole);
    return { ...toUser(row), roles: roles.map((r) => r.name), grants, permissions: effectivePermissions(roles, grants) };
  }

  private async requireRoles(roles: string[]): Promise<void> {
    if (roles.length === 0) return;
    const known = new Set((await this.db.selectFrom('roles').select('name').execute()).map((r) => r.name));
    const unknown = roles.filter((r) => !known.has(r));
    if (unknown.length > 0) {
      throw new GatewayError('invalid_request', `Unknown role ${unknown.join(', ')}; known roles: ${[...known].sort().join(', ')}`, {
        reason: 'unknown_role',
      });
    }
  }
}

function validateGrant(kind: GrantKind, value: string): void {
  if (kind === 'capability' && !isCapability(value)) {
    throw new GatewayError('invalid_request', `Unknown capability ${value}; known: manage_users, manage_keys, read_usage, broadcast`, {
      reason: 'unknown_capability',
    });
  }
  if (kind === 'model' && !/^[A-Za-z0-9.*:_@/-]{1,128}$/.test(value)) {
    throw new GatewayError('invalid_request', `Model pattern ${JSON.stringify(value)}: expected letters, digits, . - _ : @ / and *`, {
      reason: 'invalid_model_pattern',
    });
  }
}
