import { describe, expect, it } from 'vitest';
import { GatewayError } from '../../src/errors/index.js';
import { effectivePermissions, matchesGlob, modelAllowed, requireCapability, requireMaxTokens, requireModel } from '../../src/auth/permissions.js';

const member = { name: 'member', capabilities: [], models: ['claude-*'], maxOutputTokens: 4096, rateTier: null };
const admin = { name: 'admin', capabilities: ['manage_users' as const, 'broadcast' as const], models: ['*'], maxOutputTokens: null, rateTier: 'staff' };
const none = { models: [], capabilities: [], maxOutputTokens: null, rateTier: null };

describe('permissions', () => {
  it('matches model globs with * only', () => {
    expect(matchesGlob('claude-sonnet-*', 'claude-sonnet-4-5')).toBe(true);
    expect(matchesGlob('claude-sonnet-*', 'claude-opus-4-5')).toBe(false);
    expect(matchesGlob('claude-3.5', 'claude-305')).toBe(false);
    expect(matchesGlob('*', 'anything')).toBe(true);
  });

  it('unions roles and grants; a user limit overrides the roles', () => {
    const p = effectivePermissions([member], { ...none, models: ['gpt-x'], capabilities: ['read_usage'] });
    expect(p.models).toEqual(['claude-*', 'gpt-x']);
    expect(p.capabilities).toEqual(['read_usage']);
    expect(p.maxOutputTokens).toBe(4096);
    expect(p.rateTier).toBe('default');
    expect(effectivePermissions([member], { ...none, maxOutputTokens: 100 }).maxOutputTokens).toBe(100);
  });

  it('takes the most generous cap across roles (null = no cap wins)', () => {
    const p = effectivePermissions([member, admin], none);
    expect(p.maxOutputTokens).toBeNull();
    expect(p.rateTier).toBe('staff');
    expect(p.capabilities).toEqual(['manage_users', 'broadcast']);
  });

  it('explains a missing permission with a permission_error', () => {
    const p = effectivePermissions([member], none);
    expect(modelAllowed(p, 'claude-haiku-4-5')).toBe(true);
    expect(() => requireModel(p, 'llama-3')).toThrowError(/not allowed to use the model llama-3/);
    try {
      requireCapability(p, 'manage_keys');
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(GatewayError);
      expect((err as GatewayError).status).toBe(403);
      expect((err as GatewayError).type).toBe('permission_error');
      expect((err as GatewayError).reason).toBe('missing_capability');
    }
    expect(() => requireMaxTokens(p, 5000)).toThrowError(/more than your limit of 4096/);
    expect(() => requireMaxTokens(p, 4096)).not.toThrow();
  });
});
