/**
 * Opaque tokens (refresh tokens, personal access tokens): random, shown once, stored only
 * as a SHA-256 hash, compared in constant time.
 */
import { hash, randomBytes, timingSafeEqual } from 'node:crypto';

/** A new random token with a readable prefix, e.g. `pcl_rt_…` (32 random bytes). */
export function newToken(prefix: string): string {
  return `${prefix}${randomBytes(32).toString('base64url')}`;
}

/** The stored form of a token: hex SHA-256. Tokens are high-entropy, so no salt is needed. */
export function hashToken(token: string): string {
  return hash('sha256', token, 'hex');
}

/** Constant-time equality of two strings (false on different lengths, without early exit on content). */
export function safeEqual(a: string, b: string): boolean {
  const ab = Buffer.from(a, 'utf8');
  const bb = Buffer.from(b, 'utf8');
  if (ab.length !== bb.length) return false;
  return timingSafeEqual(ab, bb);
}
