/**
 * The one authentication function: every door (HTTP API, auth routes, WebSocket upgrade)
 * turns credentials into an AuthContext here and nowhere else.
 *
 * Accepted, in this order of precedence:
 *  1. `Authorization: Bearer <access JWT | pcl_pat_…>`
 *  2. `x-api-key: <pcl_pat_… | access JWT>` (what Anthropic SDKs send)
 *  3. the `pcl_at` session cookie (an access JWT; credential `cookie`). The caller must
 *     apply the CSRF/Origin checks of cookies.ts to state-changing requests.
 *
 * Freshness: the user's status, roles and permissions are read from the database, cached
 * per instance for at most USER_CACHE_MS; a session's revocation is read through
 * SessionService.state (immediate on the revoking instance, SESSION_CACHE_MS elsewhere).
 * A verified personal token is trusted for VERIFIED_CACHE_MS (1 s) per instance; revoking
 * through PersonalTokenService is immediate on that instance (see personal-tokens.ts).
 * A verified access token's signature and claims are trusted for VERIFIED_CACHE_MS too (an
 * Ed25519 verification costs about 200 µs, more than the rest of a proxied request), never
 * past its `exp`; its session and user are checked on every request as above.
 */
import type { Config } from '../config/index.js';
import { GatewayError } from '../errors/index.js';
import type { AccessClaims } from './access-tokens.js';
import { verifyAccessToken } from './access-tokens.js';
import { ACCESS_COOKIE } from './cookies.js';
import type { Permissions } from './permissions.js';
import type { PersonalTokenInfo, PersonalTokenService } from './personal-tokens.js';
import { PERSONAL_TOKEN_PREFIX, VERIFIED_CACHE_MS, narrowPermissions } from './personal-tokens.js';
import { hashToken } from '../security/tokens.js';
import type { SessionService } from './sessions.js';
import type { SigningKeyStore } from './signing-keys.js';
import type { User, UserService, UserView } from './users.js';

export interface AuthInput {
  /** The raw Authorization header. */
  authorization?: string;
  /** The raw x-api-key header. */
  apiKey?: string;
  cookies?: Record<string, string | undefined>;
}

export interface AuthContext {
  user: User;
  /** The user's permissions, narrowed by a personal token's models. */
  permissions: Permissions;
  sessionId: string | null;
  personalTokenId: string | null;
  credential: 'access_token' | 'personal_token' | 'cookie';
  /** When the credential expires (ms): the access token's expiry, or a personal token's own (null: never). */
  expiresAt: number | null;
}

export interface Authenticate {
  (input: AuthInput): Promise<AuthContext>;
  /**
   * True when the input's credential (personal token or access token) was verified on this
   * instance moments ago (VERIFIED_CACHE_MS): no guess, so brute-force checks may skip it.
   * Never throws.
   */
  recentlyVerified(input: AuthInput): boolean;
  /**
   * What `authenticate` would resolve to, without I/O or a promise, when the input is a
   * personal token verified on this instance within VERIFIED_CACHE_MS and its user's active
   * status is cached (USER_CACHE_MS); undefined otherwise (then call `authenticate`). The
   * busiest path (SDKs and Claude Code send the same token with every request) costs no
   * chain of promises this way. Never throws.
   */
  cached(input: AuthInput): AuthContext | undefined;
  /**
   * `auth` checked again, for a credential that stays in use after it was verified (an open
   * WebSocket): its session or personal token still live and its user active, read through
   * the same caches as `authenticate` (a personal token from the database); the user's
   * current permissions. Throws 401 as `authenticate` would.
   */
  recheck(auth: AuthContext): Promise<AuthContext>;
}

export interface AuthenticateDeps {
  config: Pick<Config, 'publicUrl'>;
  users: UserService;
  sessions: SessionService;
  personalTokens: PersonalTokenService;
  signingKeys: SigningKeyStore;
  now?: () => number;
}

/** How long a user's status and permissions may be served from this instance's memory. */
export const USER_CACHE_MS = 3_000;
const MAX_CACHED_USERS = 10_000;
/** Verified access tokens remembered at most (past it the cache starts again empty). */
const MAX_CACHED_TOKENS = 10_000;

function unauthenticated(reason: string, message: string): GatewayError {
  return new GatewayError('unauthenticated', message, { reason });
}

/** The user alone, without the roles, grants and permissions the view carries. */
function toUser(view: UserView): User {
  const { roles: _roles, grants: _grants, permissions: _permissions, ...user } = view;
  return user;
}

/** A presented credential; its hash (the caches' key) is computed once, when first needed. */
interface Credential {
  value: string;
  from: 'header' | 'cookie';
  hash?: string;
}

const hashOf = (credential: Credential): string => (credential.hash ??= recentHash(credential.value));

/**
 * The hashes of the credentials presented within the last VERIFIED_CACHE_MS, by credential:
 * a client sends the same token with every request, and SHA-256 through node:crypto cost
 * about 1.5 µs of each (docs/benchmarks.md, session 11). Only a pure function's results: the
 * trust caches stay keyed by hash and decide as before. Emptied VERIFIED_CACHE_MS after its
 * first entry, so it holds a credential no longer than that, about as long as the request
 * that carried it is in memory.
 */
const recentHashes = new Map<string, string>();
/** Personal tokens are about 50 characters, access tokens under 1,000. */
const MAX_MEMOISED_CREDENTIAL = 2048;

function recentHash(value: string): string {
  let hash = recentHashes.get(value);
  if (hash !== undefined) return hash;
  hash = hashToken(value);
  // Only credentials of a token's size: a client sending long garbage must not make it hold
  // megabytes (10,000 entries of at most 2 KB).
  if (value.length > MAX_MEMOISED_CREDENTIAL || recentHashes.size >= MAX_CACHED_TOKENS) return hash;
  if (recentHashes.size === 0) setTimeout(() => recentHashes.clear(), VERIFIED_CACHE_MS).unref();
  recentHashes.set(value, hash);
  return hash;
}

/** Per input, so asking `recentlyVerified` and then authenticating parses and hashes once. */
const presentedBy = new WeakMap<AuthInput, Credential | 'malformed' | undefined>();

/**
 * The credential an input presents, in the order of precedence above: the Authorization
 * header (`malformed` when it is not `Bearer <token>`), else x-api-key, else the cookie.
 */
function presented(input: AuthInput): Credential | 'malformed' | undefined {
  if (presentedBy.has(input)) return presentedBy.get(input);
  const credential = credentialOf(input);
  presentedBy.set(input, credential);
  return credential;
}

/** `presented` without remembering the answer. */
function credentialOf(input: AuthInput): Credential | 'malformed' | undefined {
  if (input.authorization !== undefined && input.authorization !== '') {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(input.authorization);
    return match ? { value: match[1]!, from: 'header' } : 'malformed';
  }
  if (input.apiKey !== undefined && input.apiKey !== '') return { value: input.apiKey.trim(), from: 'header' };
  const cookie = input.cookies?.[ACCESS_COOKIE];
  return cookie ? { value: cookie, from: 'cookie' } : undefined;
}

/** Builds the authenticate function over the given services (one per app). */
export function createAuthenticate(deps: AuthenticateDeps): Authenticate {
  const now = deps.now ?? Date.now;
  /** userId → the user's view and the user alone (built once per fetch, not per request). */
  const users = new Map<string, { view: UserView; user: User; fetchedAt: number }>();
  deps.sessions.onUserDisabled((userId) => users.delete(userId));

  /** The user's cached entry while it is fresh (USER_CACHE_MS). */
  function cachedUser(userId: string, t: number): { view: UserView; user: User; fetchedAt: number } | undefined {
    const entry = users.get(userId);
    return entry && t - entry.fetchedAt < USER_CACHE_MS ? entry : undefined;
  }

  async function activeUser(userId: string): Promise<{ view: UserView; user: User }> {
    const t = now();
    let entry = cachedUser(userId, t);
    if (!entry) {
      const found = await deps.users.findById(userId);
      if (!found) throw unauthenticated('user_disabled', 'This user no longer exists');
      const view = await deps.users.view(userId);
      entry = { view, user: Object.freeze(toUser(view)), fetchedAt: t };
      if (users.size >= MAX_CACHED_USERS) users.clear();
      users.set(userId, entry);
    }
    if (entry.view.status !== 'active') throw unauthenticated('user_disabled', 'This user is disabled');
    return entry;
  }

  /** Verified access tokens by hash: their claims, trusted until `until` (ms). */
  const verifiedJwts = new Map<string, { claims: AccessClaims; until: number }>();
  // A key retired here stops verifying at once: forget every token trusted without a check.
  deps.signingKeys.onRetire(() => verifiedJwts.clear());

  /** The claims of `hash`'s token if it was verified within VERIFIED_CACHE_MS and has not expired. */
  function trustedClaims(hash: string, t: number): AccessClaims | undefined {
    const hit = verifiedJwts.get(hash);
    return hit !== undefined && hit.until > t ? hit.claims : undefined;
  }

  async function verifiedClaims(token: string, hash: string): Promise<AccessClaims> {
    const t = now();
    const trusted = trustedClaims(hash, t);
    if (trusted) return trusted;
    const claims = await verifyAccessToken(deps.signingKeys, token, { issuer: deps.config.publicUrl, now: t });
    if (verifiedJwts.size >= MAX_CACHED_TOKENS) verifiedJwts.clear();
    verifiedJwts.set(hash, { claims, until: Math.min(t + VERIFIED_CACHE_MS, claims.exp * 1000) });
    return claims;
  }

  /** Throws unless session `sessionId` of `userId` is neither revoked nor over. */
  async function liveSession(sessionId: string, userId: string): Promise<void> {
    const session = await deps.sessions.state(sessionId);
    if (!session || session.userId !== userId) throw unauthenticated('session_revoked', 'The session of this token no longer exists');
    if (session.revokedAt !== null) throw unauthenticated('session_revoked', 'The session of this token has been revoked');
    if (session.expiresAt <= now()) throw unauthenticated('token_expired', 'The session of this token has ended');
  }

  async function fromAccessToken(presentedToken: Credential, credential: 'access_token' | 'cookie'): Promise<AuthContext> {
    const claims = await verifiedClaims(presentedToken.value, hashOf(presentedToken));
    await liveSession(claims.sid, claims.sub);
    const { view, user } = await activeUser(claims.sub);
    return { user, permissions: view.permissions, sessionId: claims.sid, personalTokenId: null, credential, expiresAt: claims.exp * 1000 };
  }

  function personalContext(info: Readonly<PersonalTokenInfo>, { view, user }: { view: UserView; user: User }): AuthContext {
    return {
      user,
      permissions: narrowPermissions(view.permissions, info.models),
      sessionId: null,
      personalTokenId: info.id,
      credential: 'personal_token',
      expiresAt: info.expiresAt,
    };
  }

  async function fromPersonalToken(token: Credential): Promise<AuthContext> {
    const info = await deps.personalTokens.verify(token.value, hashOf(token));
    return personalContext(info, await activeUser(info.userId));
  }

  function fromBearer(token: Credential): Promise<AuthContext> {
    if (token.value.startsWith(PERSONAL_TOKEN_PREFIX)) return fromPersonalToken(token);
    if (/^[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*$/.test(token.value)) return fromAccessToken(token, 'access_token');
    throw unauthenticated('token_malformed', 'The credential is neither an access token nor a personal access token');
  }

  /** What `authenticate` would resolve to, when a personal token verified moments ago presents it for a cached active user. */
  function cachedContext(credential: Credential | 'malformed' | undefined): AuthContext | undefined {
    if (credential === undefined || credential === 'malformed' || credential.from !== 'header' || !credential.value.startsWith(PERSONAL_TOKEN_PREFIX)) return undefined;
    const info = deps.personalTokens.recentlyVerified(hashOf(credential));
    if (!info) return undefined;
    const entry = cachedUser(info.userId, now());
    // A disabled user is refused by `authenticate`, with its error.
    return entry && entry.view.status === 'active' ? personalContext(info, entry) : undefined;
  }

  const authenticate = async function authenticate(input: AuthInput): Promise<AuthContext> {
    const credential = presented(input);
    if (credential === 'malformed') throw unauthenticated('token_malformed', 'Authorization: expected "Bearer <token>"');
    if (credential === undefined) {
      throw unauthenticated('missing_credentials', 'Send an access token or personal access token (Authorization: Bearer …, or x-api-key), or sign in');
    }
    return credential.from === 'cookie' ? fromAccessToken(credential, 'cookie') : fromBearer(credential);
  };
  return Object.assign(authenticate, {
    recentlyVerified(input: AuthInput): boolean {
      const credential = presented(input);
      if (credential === undefined || credential === 'malformed') return false;
      const hash = hashOf(credential);
      return credential.value.startsWith(PERSONAL_TOKEN_PREFIX) ? deps.personalTokens.recentlyVerified(hash) !== undefined : trustedClaims(hash, now()) !== undefined;
    },
    cached(input: AuthInput): AuthContext | undefined {
      // Remembered for `authenticate` only on a miss (it is asked next): on a hit, the
      // WeakMap's insertion would cost more than parsing did (this runs for most requests).
      const credential = presentedBy.has(input) ? presentedBy.get(input) : credentialOf(input);
      const context = cachedContext(credential);
      if (!context) presentedBy.set(input, credential);
      return context;
    },
    async recheck(auth: AuthContext): Promise<AuthContext> {
      if (auth.personalTokenId !== null) {
        const info = await deps.personalTokens.check(auth.personalTokenId);
        return personalContext(info, await activeUser(info.userId));
      }
      if (auth.expiresAt !== null && auth.expiresAt <= now()) throw unauthenticated('token_expired', 'The access token has expired');
      if (auth.sessionId === null) throw unauthenticated('session_revoked', 'The credential has no session');
      await liveSession(auth.sessionId, auth.user.id);
      const { view, user } = await activeUser(auth.user.id);
      return { ...auth, user, permissions: view.permissions };
    },
  });
}
