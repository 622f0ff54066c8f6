/**
 * Access tokens: short-lived JWTs signed with the current signing key (EdDSA), verified
 * against an explicit algorithm allowlist. Every way a token can be wrong maps to its own
 * `unauthenticated` reason, so clients (and tests) can tell them apart; messages name the
 * claim, never the token.
 */
import { randomUUID } from 'node:crypto';
import type { JWTPayload } from 'jose';
import { SignJWT, errors as joseErrors, jwtVerify } from 'jose';
import { GatewayError } from '../errors/index.js';
import type { SigningKeyStore } from './signing-keys.js';
import { SIGNING_ALG } from './signing-keys.js';

/** The `aud` of every access token. */
export const ACCESS_TOKEN_AUDIENCE = 'portcullis';
/** The JWS `typ` header of access tokens (RFC 9068), so other JWTs are not mistaken for them. */
export const ACCESS_TOKEN_TYPE = 'at+jwt';
/** Algorithms verification accepts; anything else (none, HS256, RS256…) is refused. */
export const ALLOWED_ALGORITHMS: readonly string[] = [SIGNING_ALG];

export interface AccessClaims {
  /** Our user id (`usr_…`). */
  sub: string;
  /** The session id (`ses_…`). */
  sid: string;
  roles: string[];
  /** Capabilities, space-separated. */
  scope: string;
  iat: number;
  exp: number;
  iss: string;
  aud: string;
  jti: string;
}

export interface SignAccessInput {
  userId: string;
  sessionId: string;
  roles: string[];
  capabilities: string[];
  /** PUBLIC_URL. */
  issuer: string;
  /** Expiry in ms; rounded down to whole seconds. */
  expiresAt: number;
  now: number;
}

/** Signs an access token with the store's current key; returns it with its exact expiry (ms). */
export async function signAccessToken(store: SigningKeyStore, input: SignAccessInput): Promise<{ token: string; expiresAt: number }> {
  const key = await store.current();
  const exp = Math.floor(input.expiresAt / 1000);
  const token = await new SignJWT({ sid: input.sessionId, roles: input.roles, scope: input.capabilities.join(' ') })
    .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: ACCESS_TOKEN_TYPE })
    .setSubject(input.userId)
    .setIssuer(input.issuer)
    .setAudience(ACCESS_TOKEN_AUDIENCE)
    .setIssuedAt(Math.floor(input.now / 1000))
    .setExpirationTime(exp)
    .setJti(randomUUID())
    .sign(key.privateKey);
  return { token, expiresAt: exp * 1000 };
}

function unauthenticated(reason: string, message: string, cause?: unknown): GatewayError {
  return new GatewayError('unauthenticated', message, { reason, cause });
}

/** Maps jose's failures onto our reasons; unknown failures are `token_malformed`. */
function describe(err: unknown): GatewayError {
  if (err instanceof GatewayError) return err;
  if (err instanceof joseErrors.JWTExpired) return unauthenticated('token_expired', 'The access token has expired', err);
  if (err instanceof joseErrors.JWTClaimValidationFailed) {
    if (err.claim === 'nbf' || (err.claim === 'iat' && err.reason === 'check_failed')) {
      return unauthenticated('token_not_yet_valid', `The access token is not valid yet (${err.claim})`, err);
    }
    if (err.claim === 'iss') return unauthenticated('token_wrong_issuer', 'The access token was issued by someone else (iss)', err);
    if (err.claim === 'aud') return unauthenticated('token_wrong_audience', 'The access token is meant for someone else (aud)', err);
    return unauthenticated('token_malformed', `The access token has a bad ${err.claim} claim`, err);
  }
  if (err instanceof joseErrors.JOSEAlgNotAllowed) return unauthenticated('token_alg_not_allowed', 'The access token uses an algorithm that is not allowed', err);
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) return unauthenticated('token_invalid_signature', 'The access token signature is invalid', err);
  return unauthenticated('token_malformed', 'The access token is malformed', err);
}

/**
 * Verifies signature (by `kid`, allowlisted algorithm), `typ`, `iss`, `aud`, `exp`, `nbf`
 * and the presence of sub/sid/jti/iat. Throws a GatewayError 401 with one of the reasons
 * token_expired, token_not_yet_valid, token_invalid_signature, token_wrong_issuer,
 * token_wrong_audience, token_alg_not_allowed, token_unknown_kid, token_malformed.
 */
export async function verifyAccessToken(store: SigningKeyStore, token: string, options: { issuer: string; now?: number }): Promise<AccessClaims> {
  let payload: JWTPayload;
  try {
    ({ payload } = await jwtVerify(
      token,
      async (header) => {
        if (!ALLOWED_ALGORITHMS.includes(header.alg)) throw unauthenticated('token_alg_not_allowed', 'The access token uses an algorithm that is not allowed');
        if (typeof header.kid !== 'string' || header.kid.length === 0 || header.kid.length > 100) {
          throw unauthenticated('token_unknown_kid', 'The access token names no signing key (kid)');
        }
        const key = await store.verificationKey(header.kid);
        if (!key) throw unauthenticated('token_unknown_kid', 'The access token was signed by an unknown or withdrawn key');
        return key;
      },
      {
        algorithms: [...ALLOWED_ALGORITHMS],
        issuer: options.issuer,
        audience: ACCESS_TOKEN_AUDIENCE,
        typ: ACCESS_TOKEN_TYPE,
        requiredClaims: ['sub', 'sid', 'jti', 'iat', 'exp'],
        currentDate: options.now === undefined ? undefined : new Date(options.now),
        clockTolerance: 5,
      },
    ));
  } catch (err) {
    throw describe(err);
  }
  if (typeof payload.sid !== 'string' || !Array.isArray(payload.roles) || typeof payload.scope !== 'string') {
    throw unauthenticated('token_malformed', 'The access token lacks sid, roles or scope');
  }
  return payload as unknown as AccessClaims;
}
