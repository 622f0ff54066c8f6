/**
 * Personal access tokens (`pcl_pat_…`): long-lived API credentials a user makes for
 * themselves (or an admin for them). Shown once, stored as a SHA-256 hash, optionally
 * expiring, optionally narrowed to some model globs, revocable. `last_used_at` is written
 * at most once a minute per token.
 *
 * Freshness: a verified token is remembered by this instance for at most VERIFIED_CACHE_MS
 * (keyed by its hash, never by the token), so the hot path (every proxied request) reads
 * the database about once a second per token instead of on every call. Revoking through
 * this service forgets the token at once, so revocation is immediate on the revoking
 * instance and takes at most VERIFIED_CACHE_MS elsewhere; expiry is checked on every use.
 */
import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import type { Db } from '../db/index.js';
import type { PersonalTokenRow } from '../db/types.js';
import { GatewayError } from '../errors/index.js';
import { hashToken, newToken } from '../security/tokens.js';
import type { Permissions } from './permissions.js';
import { matchesGlob } from './permissions.js';

export const PERSONAL_TOKEN_PREFIX = 'pcl_pat_';
const LAST_USED_RESOLUTION_MS = 60_000;
const MAX_TOKENS_PER_USER = 100;
/** How long a verified token may be served from this instance's memory. */
export const VERIFIED_CACHE_MS = 1_000;
const MAX_CACHED_TOKENS = 10_000;

export interface PersonalTokenInfo {
  id: string;
  userId: string;
  name: string;
  /** Model globs narrowing the user's models; null: the user's models as they are. */
  models: string[] | null;
  createdAt: number;
  expiresAt: number | null;
  lastUsedAt: number | null;
  revokedAt: number | null;
}

export const modelGlob = z.string().regex(/^[A-Za-z0-9.*:_@/-]{1,128}$/, 'expected letters, digits, . - _ : @ / and *');

export const newPersonalTokenSchema = z.object({
  name: z.string().trim().min(1).max(100),
  /** Expiry in ms since the epoch; absent: never. */
  expiresAt: z.number().int().positive().nullable().optional(),
  models: z.array(modelGlob).min(1).max(50).nullable().optional(),
});
export type NewPersonalToken = z.input<typeof newPersonalTokenSchema>;

function toInfo(row: PersonalTokenRow): PersonalTokenInfo {
  return {
    id: row.id,
    userId: row.user_id,
    name: row.name,
    models: row.models === null ? null : (JSON.parse(row.models) as string[]),
    createdAt: Number(row.created_at),
    expiresAt: row.expires_at === null ? null : Number(row.expires_at),
    lastUsedAt: row.last_used_at === null ? null : Number(row.last_used_at),
    revokedAt: row.revoked_at === null ? null : Number(row.revoked_at),
  };
}

function unauthenticated(reason: string, message: string): GatewayError {
  return new GatewayError('unauthenticated', message, { reason });
}

/**
 * The user's permissions narrowed to a token's model globs; never wider than the user's.
 * A token glob is kept when one of the user's globs covers it; a user glob is kept when a
 * token glob covers it. Overlaps neither covers (`claude-*` vs `*-haiku`) are dropped:
 * the narrowing is conservative.
 */
export function narrowPermissions(permissions: Permissions, models: string[] | null): Permissions {
  if (models === null) return permissions;
  const kept = new Set<string>();
  for (const t of models) {
    if (permissions.models.some((u) => matchesGlob(u, t))) kept.add(t);
    else for (const u of permissions.models) if (matchesGlob(t, u)) kept.add(u);
  }
  return { ...permissions, models: [...kept].sort() };
}

export class PersonalTokenService {
  /** token hash → verified record and when it stops being trusted (ms). */
  private readonly verified = new Map<string, { info: PersonalTokenInfo; until: number }>();
  /**
   * Revocations made on this instance so far. `verify` caches what it read only when none
   * happened while it read: a read that began before a revoke's UPDATE must not put the
   * token back into the cache after the revoke cleared it.
   */
  private revocations = 0;
  private readonly events = new EventEmitter();

  constructor(
    private readonly db: Db,
    private readonly now: () => number = Date.now,
  ) {}

  /** Creates a token for `userId`; the returned `token` is the only time it is shown. */
  async create(userId: string, input: NewPersonalToken): Promise<{ token: string; info: PersonalTokenInfo }> {
    const parsed = newPersonalTokenSchema.safeParse(input);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new GatewayError('invalid_request', `${issue?.path.join('.') || 'body'}: ${issue?.message ?? 'invalid'}`, { reason: 'invalid_personal_token' });
    }
    const now = this.now();
    if (parsed.data.expiresAt != null && parsed.data.expiresAt <= now) {
      throw new GatewayError('invalid_request', 'expires: must be in the future', { reason: 'invalid_personal_token' });
    }
    const live = await this.list(userId);
    if (live.length >= MAX_TOKENS_PER_USER) {
      throw new GatewayError('conflict', `A user may hold at most ${MAX_TOKENS_PER_USER} personal tokens; revoke some first`, { reason: 'too_many_tokens' });
    }
    const token = newToken(PERSONAL_TOKEN_PREFIX);
    const row: PersonalTokenRow = {
      id: `pat_${randomBytes(12).toString('hex')}`,
      user_id: userId,
      name: parsed.data.name,
      token_hash: hashToken(token),
      models: parsed.data.models ? JSON.stringify(parsed.data.models) : null,
      created_at: now,
      expires_at: parsed.data.expiresAt ?? null,
      last_used_at: null,
      revoked_at: null,
    };
    await this.db.insertInto('personal_tokens').values(row).execute();
    return { token, info: toInfo(row) };
  }

  /** The user's tokens that are neither revoked nor expired, newest first. */
  async list(userId: string): Promise<PersonalTokenInfo[]> {
    const now = this.now();
    const rows = await this.db
      .selectFrom('personal_tokens')
      .selectAll()
      .where('user_id', '=', userId)
      .where('revoked_at', 'is', null)
      .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', now)]))
      .orderBy('created_at', 'desc')
      .orderBy('id')
      .execute();
    return rows.map(toInfo);
  }

  async get(id: string): Promise<PersonalTokenInfo | undefined> {
    const row = await this.db.selectFrom('personal_tokens').selectAll().where('id', '=', id).executeTakeFirst();
    return row ? toInfo(row) : undefined;
  }

  /**
   * Revokes a token (idempotent). With `userId`, only that user's token: another user's
   * id answers not_found, so ids cannot be probed.
   */
  async revoke(id: string, userId?: string): Promise<PersonalTokenInfo> {
    const info = await this.get(id);
    if (!info || (userId !== undefined && info.userId !== userId)) {
      throw new GatewayError('not_found', `No personal token ${id}`, { reason: 'token_not_found' });
    }
    if (info.revokedAt !== null) return info;
    const now = this.now();
    await this.db.updateTable('personal_tokens').set({ revoked_at: now }).where('id', '=', id).where('revoked_at', 'is', null).execute();
    this.revocations += 1;
    for (const [hash, entry] of this.verified) if (entry.info.id === id) this.verified.delete(hash);
    this.events.emit('revoke', { tokenId: id, userId: info.userId });
    return { ...info, revokedAt: now };
  }

  /**
   * Calls `listener` after a token is revoked on this instance (the WebSocket server closes
   * that token's sockets on every instance); returns the unsubscribe.
   */
  onRevoke(listener: (event: { tokenId: string; userId: string }) => void): () => void {
    this.events.on('revoke', listener);
    return () => this.events.off('revoke', listener);
  }

  /** The record of `hash`'s token (hashToken) when this instance verified it within VERIFIED_CACHE_MS and it may still be used. */
  recentlyVerified(hash: string): Readonly<PersonalTokenInfo> | undefined {
    return this.trusted(hash, this.now());
  }

  /** The cached record of `hash`'s token while it is trusted (VERIFIED_CACHE_MS) and unexpired. */
  private trusted(hash: string, now: number): Readonly<PersonalTokenInfo> | undefined {
    const cached = this.verified.get(hash);
    if (cached === undefined || cached.until <= now) return undefined;
    return cached.info.expiresAt === null || cached.info.expiresAt > now ? cached.info : undefined;
  }

  /**
   * The token's record if it may be used now (`hash`: its hashToken, when the caller has it).
   * Fails 401 with token_unknown, token_revoked
   * or token_expired. Stamps last_used_at when it is older than a minute.
   */
  async verify(token: string, hash = hashToken(token)): Promise<Readonly<PersonalTokenInfo>> {
    const now = this.now();
    const trusted = this.trusted(hash, now);
    if (trusted) return trusted;
    this.verified.delete(hash);
    const revocations = this.revocations;
    const info = usable(await this.db.selectFrom('personal_tokens').selectAll().where('token_hash', '=', hash).executeTakeFirst(), now);
    if (info.lastUsedAt === null || now - info.lastUsedAt >= LAST_USED_RESOLUTION_MS) {
      await this.db
        .updateTable('personal_tokens')
        .set({ last_used_at: now })
        .where('id', '=', info.id)
        .where((eb) => eb.or([eb('last_used_at', 'is', null), eb('last_used_at', '<=', now - LAST_USED_RESOLUTION_MS)]))
        .execute();
      info.lastUsedAt = now;
    }
    if (this.verified.size >= MAX_CACHED_TOKENS) this.verified.clear();
    // Shared by every request within VERIFIED_CACHE_MS, hence frozen; this request gets the
    // same record as those after it (one shape of record for the code that reads it).
    const trustedInfo = Object.freeze({ ...info });
    if (revocations === this.revocations) this.verified.set(hash, { info: trustedInfo, until: now + VERIFIED_CACHE_MS });
    return trustedInfo;
  }

  /**
   * The record of token `id` if it may still be used, read from the database: for a
   * credential checked again after it was first verified (an open WebSocket's). Fails as
   * `verify` does; stamps nothing.
   */
  async check(id: string): Promise<PersonalTokenInfo> {
    return usable(await this.db.selectFrom('personal_tokens').selectAll().where('id', '=', id).executeTakeFirst(), this.now());
  }
}

/** The token's record when `row` exists and may be used at `now`; otherwise 401 token_unknown, token_revoked or token_expired. */
function usable(row: PersonalTokenRow | undefined, now: number): PersonalTokenInfo {
  if (!row) throw unauthenticated('token_unknown', 'The personal access token is not known');
  if (row.revoked_at !== null) throw unauthenticated('token_revoked', 'The personal access token has been revoked');
  if (row.expires_at !== null && Number(row.expires_at) <= now) throw unauthenticated('token_expired', 'The personal access token has expired');
  return toInfo(row);
}
