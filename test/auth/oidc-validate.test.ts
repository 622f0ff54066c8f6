import { describe, expect, it } from 'vitest';
import { devDomain, devWalletAddress } from '../../src/auth/dev-idp.js';
import { resolveReturnTo } from '../../src/auth/oidc/return-to.js';
import type { IdTokenExpectations } from '../../src/auth/oidc/validate.js';
import { IdTokenError, checkIdTokenClaims, issuerMatches, parseLoginClaims, tokenHash } from '../../src/auth/oidc/validate.js';

const NOW = 1_800_000_000;
const expect0: IdTokenExpectations = { issuer: 'https://auth.unstoppabledomains.com', clientId: 'client-1', nonce: 'n-1', now: NOW, clockToleranceSeconds: 60 };

/** A uAuth-shaped payload: array aud, trailing-slash iss, exp = iat + 3600. */
function uauthPayload(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    iss: 'https://auth.unstoppabledomains.com/',
    aud: ['client-1'],
    sub: 'charles-xavier.crypto',
    iat: NOW - 5,
    exp: NOW - 5 + 3600,
    nonce: 'n-1',
    wallet_address: '0x8aaD44321A86b170879d7A244c1e8d360c99DdA8',
    wallet_type_hint: 'web3',
    ...overrides,
  };
}

function rejectedClaim(payload: Record<string, unknown>, expectations: Partial<IdTokenExpectations> = {}): string {
  try {
    checkIdTokenClaims(payload, { ...expect0, ...expectations });
  } catch (err) {
    if (err instanceof IdTokenError) return err.claim;
    throw err;
  }
  return 'accepted';
}

describe('issuerMatches', () => {
  it('accepts the issuer with or without one trailing slash', () => {
    expect(issuerMatches('https://auth.unstoppabledomains.com', 'https://auth.unstoppabledomains.com/')).toBe(true);
    expect(issuerMatches('https://auth.unstoppabledomains.com/', 'https://auth.unstoppabledomains.com')).toBe(true);
    expect(issuerMatches('https://idp.test/realm', 'https://idp.test/realm')).toBe(true);
  });
  it('refuses every other issuer', () => {
    for (const other of [
      'https://auth.unstoppabledomains.com//',
      'https://AUTH.unstoppabledomains.com/',
      'http://auth.unstoppabledomains.com/',
      'https://auth.unstoppabledomains.com.evil.test/',
      'https://auth.unstoppabledomains.com/other',
      'https://evil.test/',
      '',
      42,
      undefined,
    ]) {
      expect(issuerMatches('https://auth.unstoppabledomains.com', other), String(other)).toBe(false);
    }
  });
});

describe('checkIdTokenClaims (OIDC Core 3.1.3.7)', () => {
  it('accepts a uAuth-shaped token (array aud, trailing-slash iss)', () => {
    expect(rejectedClaim(uauthPayload())).toBe('accepted');
    expect(rejectedClaim(uauthPayload({ aud: 'client-1' }))).toBe('accepted');
  });
  it('refuses another issuer', () => {
    expect(rejectedClaim(uauthPayload({ iss: 'https://evil.test/' }))).toBe('iss');
  });
  it('refuses an audience without this client, and a malformed one', () => {
    expect(rejectedClaim(uauthPayload({ aud: ['other'] }))).toBe('aud');
    expect(rejectedClaim(uauthPayload({ aud: [] }))).toBe('aud');
    expect(rejectedClaim(uauthPayload({ aud: [1] }))).toBe('aud');
    expect(rejectedClaim(uauthPayload({ aud: undefined }))).toBe('aud');
  });
  it('requires azp = client id when present or when there are several audiences', () => {
    expect(rejectedClaim(uauthPayload({ azp: 'other' }))).toBe('azp');
    expect(rejectedClaim(uauthPayload({ aud: ['client-1', 'other'] }))).toBe('azp');
    expect(rejectedClaim(uauthPayload({ aud: ['client-1', 'other'], azp: 'other' }))).toBe('azp');
    expect(rejectedClaim(uauthPayload({ aud: ['client-1', 'other'], azp: 'client-1' }))).toBe('accepted');
  });
  it('refuses a missing or different nonce', () => {
    expect(rejectedClaim(uauthPayload({ nonce: undefined }))).toBe('nonce');
    expect(rejectedClaim(uauthPayload({ nonce: 'n-2' }))).toBe('nonce');
  });
  it('refuses expired tokens beyond the tolerance, accepts within it', () => {
    expect(rejectedClaim(uauthPayload({ exp: NOW - 61 }))).toBe('exp');
    expect(rejectedClaim(uauthPayload({ exp: NOW - 30 }))).toBe('accepted');
    expect(rejectedClaim(uauthPayload({ exp: undefined }))).toBe('exp');
    expect(rejectedClaim(uauthPayload({ exp: '9999999999' }))).toBe('exp');
  });
  it('refuses iat in the future, too old, or missing', () => {
    expect(rejectedClaim(uauthPayload({ iat: NOW + 120 }))).toBe('iat');
    expect(rejectedClaim(uauthPayload({ iat: NOW - 3000 }))).toBe('iat');
    expect(rejectedClaim(uauthPayload({ iat: undefined }))).toBe('iat');
  });
  it('requires a recent auth_time when max_age was asked', () => {
    expect(rejectedClaim(uauthPayload(), { maxAgeSeconds: 300 })).toBe('auth_time');
    expect(rejectedClaim(uauthPayload({ auth_time: NOW - 1000 }), { maxAgeSeconds: 300 })).toBe('auth_time');
    expect(rejectedClaim(uauthPayload({ auth_time: NOW - 100 }), { maxAgeSeconds: 300 })).toBe('accepted');
  });
  it('checks at_hash against the access token', () => {
    const good = tokenHash('access-1', 'RS256');
    expect(rejectedClaim(uauthPayload({ at_hash: good }), { accessToken: 'access-1', alg: 'RS256' })).toBe('accepted');
    expect(rejectedClaim(uauthPayload({ at_hash: good }), { accessToken: 'access-2', alg: 'RS256' })).toBe('at_hash');
  });
  it('never puts a claim value in its message', () => {
    try {
      checkIdTokenClaims(uauthPayload({ nonce: 'secret-nonce-value' }), expect0);
    } catch (err) {
      expect((err as Error).message).not.toContain('secret-nonce-value');
    }
  });
});

describe('parseLoginClaims', () => {
  it('keeps sub, wallet_address, email, name', () => {
    expect(parseLoginClaims({ sub: 'a.crypto', wallet_address: '0x8aaD44321A86b170879d7A244c1e8d360c99DdA8', email: 'a@b.test' })).toEqual({
      sub: 'a.crypto',
      wallet_address: '0x8aaD44321A86b170879d7A244c1e8d360c99DdA8',
      email: 'a@b.test',
      name: undefined,
    });
  });
  it('refuses an empty or non-string sub and a malformed wallet or email', () => {
    expect(() => parseLoginClaims({ sub: '' })).toThrow(IdTokenError);
    expect(() => parseLoginClaims({ sub: 42 })).toThrow(/sub/);
    expect(() => parseLoginClaims({ sub: 'a', wallet_address: '0xnothex' })).toThrow(/wallet_address/);
    expect(() => parseLoginClaims({ sub: 'a', wallet_address: 7 })).toThrow(/wallet_address/);
    expect(() => parseLoginClaims({ sub: 'a', email: 'not-an-email' })).toThrow(/email/);
  });
});

describe('resolveReturnTo', () => {
  const policy = { publicUrl: 'https://gw.test', allowedOrigins: ['https://app.test'] };
  it('defaults to / and keeps local paths', () => {
    expect(resolveReturnTo(undefined, policy)).toBe('/');
    expect(resolveReturnTo('/chat?x=1#y', policy)).toBe('/chat?x=1#y');
  });
  it('allows absolute URLs on PUBLIC_URL and ALLOWED_ORIGINS only', () => {
    expect(resolveReturnTo('https://gw.test/a', policy)).toBe('https://gw.test/a');
    expect(resolveReturnTo('https://app.test/b', policy)).toBe('https://app.test/b');
  });
  it('refuses open redirects', () => {
    for (const bad of ['//evil.test', 'https://evil.test', '/\\evil', '\\\\evil.test', '/\t/evil.test', 'http://gw.test/a', 'https://user@gw.test/', 'javascript:alert(1)', 'evil.test', 'https://app.test.evil.test/']) {
      expect(resolveReturnTo(bad, policy), bad).toBeUndefined();
    }
  });
});

describe('development provider accounts', () => {
  it('turns a name into a domain and keeps a domain', () => {
    expect(devDomain('alice')).toBe('alice.crypto');
    expect(devDomain(' Bob.X ')).toBe('bob.x');
    expect(devWalletAddress('alice.crypto')).toMatch(/^0x[0-9a-f]{40}$/);
    expect(devWalletAddress('alice.crypto')).toBe(devWalletAddress('alice.crypto'));
  });
});
