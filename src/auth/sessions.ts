/**
 * Sessions: one per sign-in (or CLI issue), each with a chain of opaque refresh tokens and
 * short-lived access JWTs.
 *
 * Guarantees:
 * - Refresh tokens are stored hashed and rotate on every use; the swap is one conditional
 *   UPDATE, so of two refreshes with the same token exactly one wins.
 * - Presenting a refresh token that was already used (stolen and replayed, or a client
 *   that refreshed twice at once) revokes the whole session (reason `refresh_token_reuse`).
 *   There is deliberately no grace window: clients must serialise their refreshes.
 * - A session never outlives `expires_at` (SESSION_MAX_AGE after its start), whatever the
 *   refreshes; a refresh token expires REFRESH_TOKEN_TTL after it was issued (sliding).
 * - `revoke()` takes effect at once on this instance (its state cache is cleared) and within
 *   SESSION_CACHE_MS on others; listeners registered with `onRevoke` hear about it here.
 */
import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import type { Config } from '../config/index.js';
import type { Db } from '../db/index.js';
import type { SessionRow } from '../db/types.js';
import { GatewayError } from '../errors/index.js';
import { hashToken, newToken } from '../security/tokens.js';
import { signAccessToken } from './access-tokens.js';
import type { SigningKeyStore } from './signing-keys.js';
import type { UserService, UserView } from './users.js';

export interface SessionMeta {
  ip: string;
  userAgent: string | null;
  /** The login's OIDC issuer (or `cli`). */
  issuer: string;
}

export interface SessionInfo {
  id: string;
  userId: string;
  createdAt: number;
  lastSeenAt: number;
  ip: string;
  userAgent: string | null;
  issuer: string;
  /** Absolute cap (ms). */
  expiresAt: number;
  revokedAt: number | null;
  revokedReason: string | null;
}

export interface IssuedTokens {
  accessToken: string;
  refreshToken: string;
  /** Seconds until the access token expires. */
  expiresIn: number;
  /** When the access token expires (ms). */
  accessExpiresAt: number;
  session: SessionInfo;
}

export interface RevocationEvent {
  sessionId: string;
  userId: string;
  reason: string;
}

/** What authentication needs to know about a session, cached briefly per instance. */
export interface SessionState {
  userId: string;
  expiresAt: number;
  revokedAt: number | null;
  revokedReason: string | null;
}

export interface SessionServiceOptions {
  db: Db;
  users: UserService;
  signingKeys: SigningKeyStore;
  config: Pick<Config, 'publicUrl' | 'accessTokenTtl' | 'refreshTokenTtl' | 'sessionMaxAge'>;
  log: { warn(obj: object, msg: string): void };
  now?: () => number;
}

/** How long another instance may keep accepting a session after it was revoked elsewhere. */
export const SESSION_CACHE_MS = 5_000;
/** The longest lifetime `issueAccessOnly` (the CLI) may give a token. */
export const MAX_ISSUED_TTL_MS = 24 * 3_600_000;
const MAX_CACHED_SESSIONS = 10_000;

function toInfo(row: SessionRow): SessionInfo {
  return {
    id: row.id,
    userId: row.user_id,
    createdAt: Number(row.created_at),
    lastSeenAt: Number(row.last_seen_at),
    ip: row.ip,
    userAgent: row.user_agent,
    issuer: row.issuer,
    expiresAt: Number(row.expires_at),
    revokedAt: row.revoked_at === null ? null : Number(row.revoked_at),
    revokedReason: row.revoked_reason,
  };
}

function unauthenticated(reason: string, message: string): GatewayError {
  return new GatewayError('unauthenticated', message, { reason });
}

export class SessionService {
  private readonly db: Db;
  private readonly now: () => number;
  private readonly events = new EventEmitter();
  private readonly states = new Map<string, SessionState & { fetchedAt: number }>();
  /**
   * Revocations made on this instance so far. `state` caches what it read only when none
   * happened while it read: a read that began before a revoke's UPDATE must not put the
   * live session back into the cache after the revoke cleared it.
   */
  private revocations = 0;

  constructor(private readonly options: SessionServiceOptions) {
    this.db = options.db;
    this.now = options.now ?? Date.now;
    this.events.setMaxListeners(0);
  }

  /** Starts a session for an active user: a new session row, refresh token and access token. */
  async start(userId: string, meta: SessionMeta): Promise<IssuedTokens> {
    const view = await this.activeUser(userId);
    const now = this.now();
    const row = newSessionRow(userId, meta, now, now + this.options.config.sessionMaxAge);
    const refreshToken = newToken('pcl_rt_');
    await this.db.transaction().execute(async (trx) => {
      await trx.insertInto('sessions').values(row).execute();
      await trx.insertInto('refresh_tokens').values(this.refreshRow(refreshToken, row, now)).execute();
    });
    return this.issue(toInfo(row), view, refreshToken, now);
  }

  /**
   * Exchanges a refresh token for a new access token and a new refresh token. Fails 401 with
   * refresh_token_invalid, refresh_token_expired, refresh_token_reused (the session is then
   * revoked), session_revoked, session_expired or user_disabled.
   */
  async refresh(refreshToken: string, meta: Pick<SessionMeta, 'ip' | 'userAgent'>): Promise<IssuedTokens> {
    const now = this.now();
    const hash = hashToken(refreshToken);
    const token = await this.db.selectFrom('refresh_tokens').selectAll().where('token_hash', '=', hash).executeTakeFirst();
    if (!token) throw unauthenticated('refresh_token_invalid', 'The refresh token is not known');
    const session = await this.db.selectFrom('sessions').selectAll().where('id', '=', token.session_id).executeTakeFirstOrThrow();
    if (session.revoked_at !== null) throw unauthenticated('session_revoked', 'The session has been revoked; sign in again');
    if (token.used_at !== null) return this.reused(session);
    if (Number(session.expires_at) <= now) throw unauthenticated('session_expired', 'The session has reached its maximum age; sign in again');
    if (Number(token.expires_at) <= now) throw unauthenticated('refresh_token_expired', 'The refresh token has expired; sign in again');
    const view = await this.options.users.view(session.user_id);
    if (view.status !== 'active') {
      await this.revoke(session.id, 'user_disabled');
      throw unauthenticated('user_disabled', 'This user is disabled');
    }
    const next = newToken('pcl_rt_');
    const nextHash = hashToken(next);
    const swapped = await this.db.transaction().execute(async (trx) => {
      const result = await trx
        .updateTable('refresh_tokens')
        .set({ used_at: now, replaced_by: nextHash })
        .where('token_hash', '=', hash)
        .where('used_at', 'is', null)
        .executeTakeFirst();
      if (Number(result.numUpdatedRows) !== 1) return false;
      await trx.insertInto('refresh_tokens').values(this.refreshRow(next, session, now)).execute();
      await trx
        .updateTable('sessions')
        .set({ last_seen_at: now, ip: meta.ip, user_agent: meta.userAgent ? meta.userAgent.slice(0, 512) : null })
        .where('id', '=', session.id)
        .execute();
      return true;
    });
    if (!swapped) return this.reused(session);
    const info = toInfo({ ...session, last_seen_at: now, ip: meta.ip, user_agent: meta.userAgent });
    return this.issue(info, view, next, now);
  }

  /** Ends a session (idempotent: the first reason is kept). Fails not_found when it never existed. */
  async revoke(sessionId: string, reason: string): Promise<void> {
    const row = await this.db.selectFrom('sessions').select(['id', 'user_id', 'revoked_at']).where('id', '=', sessionId).executeTakeFirst();
    if (!row) throw new GatewayError('not_found', `No session ${sessionId}`, { reason: 'session_not_found' });
    this.states.delete(sessionId);
    if (row.revoked_at !== null) return;
    const result = await this.db
      .updateTable('sessions')
      .set({ revoked_at: this.now(), revoked_reason: reason })
      .where('id', '=', sessionId)
      .where('revoked_at', 'is', null)
      .executeTakeFirst();
    this.revocations += 1;
    this.states.delete(sessionId);
    if (Number(result.numUpdatedRows) === 1) this.events.emit('revoke', { sessionId, userId: row.user_id, reason } satisfies RevocationEvent);
  }

  /** Revokes every live session of a user; returns how many. */
  async revokeAllForUser(userId: string, reason: string): Promise<number> {
    const live = await this.list(userId);
    for (const s of live) await this.revoke(s.id, reason);
    return live.length;
  }

  /** Disables a user, ends their sessions and tells `onUserDisabled` listeners on this instance. */
  async disableUser(userId: string): Promise<void> {
    await this.options.users.setStatus(userId, 'disabled');
    await this.revokeAllForUser(userId, 'user_disabled');
    this.events.emit('user_disabled', userId);
  }

  /** The user's live sessions (neither revoked nor expired), newest first. */
  async list(userId: string): Promise<SessionInfo[]> {
    const rows = await this.db
      .selectFrom('sessions')
      .selectAll()
      .where('user_id', '=', userId)
      .where('revoked_at', 'is', null)
      .where('expires_at', '>', this.now())
      .orderBy('created_at', 'desc')
      .orderBy('id')
      .execute();
    return rows.map(toInfo);
  }

  /** Every live session, newest first (CLI, admin overviews). */
  async listAll(limit = 1000): Promise<SessionInfo[]> {
    const rows = await this.db
      .selectFrom('sessions')
      .selectAll()
      .where('revoked_at', 'is', null)
      .where('expires_at', '>', this.now())
      .orderBy('created_at', 'desc')
      .orderBy('id')
      .limit(limit)
      .execute();
    return rows.map(toInfo);
  }

  /** The session a refresh token (by hash) belongs to, used or not; for logout. */
  async sessionOfRefreshToken(tokenHash: string): Promise<string | null> {
    const row = await this.db.selectFrom('refresh_tokens').select('session_id').where('token_hash', '=', tokenHash).executeTakeFirst();
    return row?.session_id ?? null;
  }

  async get(sessionId: string): Promise<SessionInfo | undefined> {
    const row = await this.db.selectFrom('sessions').selectAll().where('id', '=', sessionId).executeTakeFirst();
    return row ? toInfo(row) : undefined;
  }

  /**
   * The session's state for authentication: read from the database at most every
   * SESSION_CACHE_MS per instance; a revoke on this instance clears it at once.
   */
  async state(sessionId: string): Promise<SessionState | undefined> {
    const now = this.now();
    const cached = this.states.get(sessionId);
    if (cached && now - cached.fetchedAt < SESSION_CACHE_MS) return cached;
    const revocations = this.revocations;
    const row = await this.db
      .selectFrom('sessions')
      .select(['user_id', 'expires_at', 'revoked_at', 'revoked_reason'])
      .where('id', '=', sessionId)
      .executeTakeFirst();
    if (!row) return undefined;
    const state = {
      userId: row.user_id,
      expiresAt: Number(row.expires_at),
      revokedAt: row.revoked_at === null ? null : Number(row.revoked_at),
      revokedReason: row.revoked_reason,
      fetchedAt: now,
    };
    if (revocations !== this.revocations) return state;
    if (this.states.size >= MAX_CACHED_SESSIONS) this.states.clear();
    this.states.set(sessionId, state);
    return state;
  }

  /**
   * A session without a refresh token and one access token of `ttlMs` (at most
   * MAX_ISSUED_TTL_MS): for `portcullis token issue`.
   */
  async issueAccessOnly(userId: string, options: { ttlMs: number; issuer: string; ip?: string }): Promise<{ accessToken: string; accessExpiresAt: number; session: SessionInfo }> {
    if (!(options.ttlMs > 0 && options.ttlMs <= MAX_ISSUED_TTL_MS)) {
      throw new GatewayError('invalid_request', 'ttl: expected a duration up to 24h', { reason: 'invalid_ttl' });
    }
    const view = await this.activeUser(userId);
    const now = this.now();
    const row = newSessionRow(userId, { ip: options.ip ?? '127.0.0.1', userAgent: null, issuer: options.issuer }, now, now + options.ttlMs);
    await this.db.insertInto('sessions').values(row).execute();
    const signed = await this.sign(view, row.id, row.expires_at, now);
    return { accessToken: signed.token, accessExpiresAt: signed.expiresAt, session: toInfo(row) };
  }

  /** Calls `listener` after each revocation made on this instance; returns the unsubscribe. */
  onRevoke(listener: (event: RevocationEvent) => void): () => void {
    this.events.on('revoke', listener);
    return () => this.events.off('revoke', listener);
  }

  /** Calls `listener` with the user id after `disableUser` on this instance; returns the unsubscribe. */
  onUserDisabled(listener: (userId: string) => void): () => void {
    this.events.on('user_disabled', listener);
    return () => this.events.off('user_disabled', listener);
  }

  private async reused(session: SessionRow): Promise<never> {
    await this.revoke(session.id, 'refresh_token_reuse');
    this.options.log.warn({ session_id: session.id, user_id: session.user_id }, 'refresh token reused: session revoked');
    throw unauthenticated('refresh_token_reused', 'This refresh token was already used; the session has been revoked');
  }

  private async activeUser(userId: string): Promise<UserView> {
    const view = await this.options.users.view(userId);
    if (view.status !== 'active') throw unauthenticated('user_disabled', 'This user is disabled');
    return view;
  }

  private refreshRow(token: string, session: Pick<SessionRow, 'id' | 'expires_at'>, now: number) {
    return {
      token_hash: hashToken(token),
      session_id: session.id,
      created_at: now,
      expires_at: Math.min(now + this.options.config.refreshTokenTtl, Number(session.expires_at)),
      used_at: null,
      replaced_by: null,
    };
  }

  private sign(view: UserView, sessionId: string, sessionExpiresAt: number, now: number) {
    return signAccessToken(this.options.signingKeys, {
      userId: view.id,
      sessionId,
      roles: view.roles,
      capabilities: view.permissions.capabilities,
      issuer: this.options.config.publicUrl,
      expiresAt: Math.min(now + this.options.config.accessTokenTtl, Number(sessionExpiresAt)),
      now,
    });
  }

  private async issue(session: SessionInfo, view: UserView, refreshToken: string, now: number): Promise<IssuedTokens> {
    const signed = await this.sign(view, session.id, session.expiresAt, now);
    return {
      accessToken: signed.token,
      refreshToken,
      expiresIn: Math.max(0, Math.floor(signed.expiresAt / 1000) - Math.floor(now / 1000)),
      accessExpiresAt: signed.expiresAt,
      session,
    };
  }
}

function newSessionRow(userId: string, meta: SessionMeta, now: number, expiresAt: number): SessionRow {
  return {
    id: `ses_${randomBytes(16).toString('hex')}`,
    user_id: userId,
    created_at: now,
    last_seen_at: now,
    ip: meta.ip,
    user_agent: meta.userAgent ? meta.userAgent.slice(0, 512) : null,
    issuer: meta.issuer,
    expires_at: expiresAt,
    revoked_at: null,
    revoked_reason: null,
  };
}
