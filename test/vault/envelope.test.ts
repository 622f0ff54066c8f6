import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { GatewayError } from '../../src/errors/index.js';
import { keyRing, open, rewrap, seal, sealedKeyId } from '../../src/security/envelope.js';

function failure(fn: () => unknown): GatewayError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(GatewayError);
    return err as GatewayError;
  }
  throw new Error('expected a GatewayError');
}

/** Flips one bit in the base64url part `index` of a sealed value. */
function flip(sealed: string, index: number): string {
  const parts = sealed.split('.');
  const bytes = Buffer.from(parts[index]!, 'base64url');
  bytes[bytes.length >> 1]! ^= 0x01;
  parts[index] = bytes.toString('base64url');
  return parts.join('.');
}

describe('envelope encryption', () => {
  const a = randomBytes(32);
  const b = randomBytes(32);
  const secret = `sk-ant-api03-${randomBytes(60).toString('base64url')}`;

  it('round-trips a secret, names its master key, and never contains the plaintext or its base64', () => {
    const ring = keyRing(a);
    const sealed = seal(ring, secret, 'upstream_key:key_1');
    expect(open(ring, sealed, 'upstream_key:key_1').toString('utf8')).toBe(secret);
    expect(sealedKeyId(sealed)).toBe(ring.current.id);
    expect(sealed).not.toContain(secret);
    expect(sealed).not.toContain(Buffer.from(secret).toString('base64url').slice(0, 24));
    expect(sealed).not.toContain(Buffer.from(secret).toString('base64').slice(0, 24));
    // Two seals of the same value differ (fresh data key and IV).
    expect(seal(ring, secret, 'upstream_key:key_1')).not.toBe(sealed);
  });

  it('fails the integrity check when the body or the wrapped data key is tampered with', () => {
    const ring = keyRing(a);
    const sealed = seal(ring, secret, 'ctx');
    for (const part of [2, 3]) {
      const err = failure(() => open(ring, flip(sealed, part), 'ctx'));
      expect(err.reason).toBe('seal_invalid');
      expect(err.message).not.toContain(secret);
    }
  });

  it('refuses a sealed value moved to another record (context swap)', () => {
    const ring = keyRing(a);
    const sealed = seal(ring, secret, 'upstream_key:key_1');
    expect(failure(() => open(ring, sealed, 'upstream_key:key_2')).reason).toBe('seal_invalid');
  });

  it('refuses an unknown format and names a missing master key by id only', () => {
    const sealed = seal(keyRing(a), secret, 'ctx');
    expect(failure(() => open(keyRing(a), 'pe0.x.y.z', 'ctx')).code).toBe('internal');
    const err = failure(() => open(keyRing(b), sealed, 'ctx'));
    expect(err.reason).toBe('master_key_missing');
    expect(err.message).toContain(keyRing(a).current.id);
    expect(err.message).not.toContain(a.toString('base64'));
  });

  it('rewrap moves a value to the current master key, keeping the body, and is a no-op when current', () => {
    const old = keyRing(a);
    const sealed = seal(old, secret, 'ctx');
    const both = keyRing(b, [a]);
    const moved = rewrap(both, sealed, 'ctx');
    expect(sealedKeyId(moved)).toBe(both.current.id);
    expect(moved.split('.')[3]).toBe(sealed.split('.')[3]);
    expect(open(keyRing(b), moved, 'ctx').toString('utf8')).toBe(secret);
    expect(rewrap(both, moved, 'ctx')).toBe(moved);
    expect(failure(() => rewrap(both, sealed, 'other')).reason).toBe('seal_invalid');
  });
});
