/**
 * Where a person goes after signing in. Only the gateway's own pages and the configured
 * browser origins are allowed, so `/auth/login?return_to=` cannot be used to bounce
 * people to another site (an open redirect).
 */

export interface ReturnToPolicy {
  /** PUBLIC_URL (its origin is always allowed). */
  publicUrl: string;
  /** ALLOWED_ORIGINS entries, scheme://host[:port]. */
  allowedOrigins: readonly string[];
}

const MAX_LENGTH = 2048;

/**
 * Returns the target to redirect to (`/` when none was given), or `undefined` when the
 * value is not allowed: relative paths must start with one `/` (not `//`), hold no
 * backslash, whitespace or control character; absolute URLs must be http(s) on an
 * allowed origin without credentials.
 */
export function resolveReturnTo(value: string | undefined, policy: ReturnToPolicy): string | undefined {
  if (value === undefined || value === '') return '/';
  if (value.length > MAX_LENGTH) return undefined;
  // Browsers drop tabs/newlines and treat \ as / in URLs: "/\evil.test" means "//evil.test".
  if (/[\s\\]/.test(value) || [...value].some((c) => c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f)) return undefined;
  const publicOrigin = new URL(policy.publicUrl).origin;
  if (value.startsWith('/')) {
    if (value.startsWith('//')) return undefined;
    try {
      if (new URL(value, policy.publicUrl).origin !== publicOrigin) return undefined;
    } catch {
      return undefined;
    }
    return value;
  }
  let target: URL;
  try {
    target = new URL(value);
  } catch {
    return undefined;
  }
  if (target.protocol !== 'https:' && target.protocol !== 'http:') return undefined;
  if (target.username || target.password) return undefined;
  const allowed = new Set([publicOrigin, ...policy.allowedOrigins.map(originOf).filter((o): o is string => o !== undefined)]);
  return allowed.has(target.origin) ? target.href : undefined;
}

function originOf(value: string): string | undefined {
  try {
    return new URL(value).origin;
  } catch {
    return undefined;
  }
}
