/**
 * ID token claim checks (OpenID Connect Core 1.0 §3.1.3.7), apart from signature
 * verification so they can be tested with plain objects.
 *
 * Guarantees: `checkIdTokenClaims` returns only when every check passed; otherwise it
 * throws an `IdTokenError` naming the claim and the reason, never a claim's value.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';

/** A rejected ID token: `claim` names what failed (`iss`, `aud`, `nonce`, `signature`…). */
export class IdTokenError extends Error {
  constructor(
    readonly claim: string,
    message: string,
  ) {
    super(message);
    this.name = 'IdTokenError';
  }
}

/**
 * Whether a token's `iss` names the expected issuer. uAuth (Ory Hydra) issues
 * `https://auth.unstoppabledomains.com/` for the issuer `https://auth.unstoppabledomains.com`,
 * so one trailing slash on either side is forgiven; nothing else is (no case folding,
 * no other path, no other host).
 */
export function issuerMatches(expected: string, actual: unknown): boolean {
  if (typeof actual !== 'string' || actual.length === 0) return false;
  return stripOneSlash(actual) === stripOneSlash(expected);
}

function stripOneSlash(value: string): string {
  return value.endsWith('/') ? value.slice(0, -1) : value;
}

export interface IdTokenExpectations {
  /** The issuer we sent the person to (configured or discovered). */
  issuer: string;
  clientId: string;
  /** The nonce stored with the login state; the token must carry exactly this. */
  nonce: string;
  /** Current time in seconds since the epoch. */
  now: number;
  /** Allowed clock difference with the provider, in seconds. */
  clockToleranceSeconds: number;
  /** Set when `max_age` was sent: `auth_time` must then be present and recent enough. */
  maxAgeSeconds?: number;
  /** Tokens issued longer ago than this are refused even if not expired (default 600 s). */
  maxTokenAgeSeconds?: number;
  /** The access token of the same response, to check `at_hash` when present. */
  accessToken?: string;
  /** The JWS `alg` of the ID token, needed for `at_hash`. */
  alg?: string;
}

const numericDate = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

/** Runs every claim check of OIDC Core §3.1.3.7 that does not need the signature. */
export function checkIdTokenClaims(payload: Record<string, unknown>, expect: IdTokenExpectations): void {
  const skew = expect.clockToleranceSeconds;
  if (!issuerMatches(expect.issuer, payload.iss)) throw new IdTokenError('iss', 'ID token issuer (iss) is not the configured issuer');

  const aud = payload.aud;
  const audiences = typeof aud === 'string' ? [aud] : Array.isArray(aud) && aud.every((a) => typeof a === 'string') ? (aud as string[]) : undefined;
  if (!audiences || audiences.length === 0) throw new IdTokenError('aud', 'ID token audience (aud) is missing or malformed');
  if (!audiences.includes(expect.clientId)) throw new IdTokenError('aud', 'ID token audience (aud) does not contain this client');
  if (payload.azp !== undefined && payload.azp !== expect.clientId) {
    throw new IdTokenError('azp', 'ID token authorized party (azp) is not this client');
  }
  if (audiences.length > 1 && payload.azp === undefined) {
    throw new IdTokenError('azp', 'ID token has several audiences but no authorized party (azp)');
  }

  if (!numericDate(payload.exp)) throw new IdTokenError('exp', 'ID token expiry (exp) is missing');
  if (payload.exp + skew <= expect.now) throw new IdTokenError('exp', 'ID token has expired');
  if (!numericDate(payload.iat)) throw new IdTokenError('iat', 'ID token issue time (iat) is missing');
  if (payload.iat - skew > expect.now) throw new IdTokenError('iat', 'ID token was issued in the future');
  if (payload.iat + (expect.maxTokenAgeSeconds ?? 600) + skew < expect.now) throw new IdTokenError('iat', 'ID token was issued too long ago');
  if (payload.nbf !== undefined && (!numericDate(payload.nbf) || payload.nbf - skew > expect.now)) {
    throw new IdTokenError('nbf', 'ID token is not valid yet (nbf)');
  }

  if (typeof payload.nonce !== 'string') throw new IdTokenError('nonce', 'ID token carries no nonce');
  if (payload.nonce !== expect.nonce) throw new IdTokenError('nonce', 'ID token nonce does not match this login');

  if (expect.maxAgeSeconds !== undefined) {
    if (!numericDate(payload.auth_time)) throw new IdTokenError('auth_time', 'ID token lacks auth_time although max_age was asked');
    if (payload.auth_time + expect.maxAgeSeconds + skew < expect.now) {
      throw new IdTokenError('auth_time', 'the authentication at the provider is older than max_age');
    }
  } else if (payload.auth_time !== undefined && !numericDate(payload.auth_time)) {
    throw new IdTokenError('auth_time', 'ID token auth_time is not a number');
  }

  if (payload.at_hash !== undefined) {
    if (typeof payload.at_hash !== 'string' || !expect.accessToken || !expect.alg) throw new IdTokenError('at_hash', 'ID token at_hash cannot be checked');
    if (payload.at_hash !== tokenHash(expect.accessToken, expect.alg)) throw new IdTokenError('at_hash', 'ID token at_hash does not match the access token');
  }
}

/** The left half of the hash of `token` that OIDC uses for at_hash / c_hash, base64url. */
export function tokenHash(token: string, alg: string): string | undefined {
  const algorithm = alg === 'EdDSA' || alg === 'Ed25519' ? 'sha512' : { '256': 'sha256', '384': 'sha384', '512': 'sha512' }[alg.slice(-3)];
  if (!algorithm) return undefined;
  const digest = createHash(algorithm).update(token, 'ascii').digest();
  return digest.subarray(0, digest.length / 2).toString('base64url');
}

const optionalText = (max: number) =>
  z
    .string()
    .max(max)
    .nullish()
    .transform((v) => (v === null || v === undefined || v.trim() === '' ? undefined : v.trim()));

/** The claims the gateway uses; anything else in the token is ignored. */
export const loginClaimsSchema = z.object({
  sub: z.string().trim().min(1, 'sub must not be empty').max(255),
  name: optionalText(200),
  email: z
    .email()
    .max(320)
    .nullish()
    .transform((v) => v ?? undefined),
  wallet_address: z
    .string()
    .regex(/^0x[0-9a-fA-F]{40}$/, 'wallet_address must be 0x followed by 40 hex digits')
    .nullish()
    .transform((v) => v ?? undefined),
});

export type LoginIdentity = z.output<typeof loginClaimsSchema>;

/** Parses the used claims; throws an IdTokenError naming the first bad claim. */
export function parseLoginClaims(payload: Record<string, unknown>): LoginIdentity {
  const result = loginClaimsSchema.safeParse(payload);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const claim = String(issue?.path[0] ?? 'claims');
  throw new IdTokenError(claim, `ID token claim ${claim} is invalid (${issue?.message ?? 'invalid'})`);
}
