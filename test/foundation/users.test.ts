import { beforeAll, describe, expect, it } from 'vitest';
import { UserService } from '../../src/auth/users.js';
import { describeEachDatabase } from '../helpers/env.js';
import { failure } from '../helpers/errors.js';


const ISS = 'https://example.test';

describeEachDatabase('users and permissions', (db) => {
  let users: UserService;
  beforeAll(async () => {
    users = new UserService((await db.engine()).database.db);
  });

  it('creates a member by default, found by subject and id', async () => {
    const alice = await users.create({ issuer: ISS, subject: 'alice.crypto', walletAddress: '0xabc' });
    expect(alice.displayName).toBe('alice.crypto');
    expect(alice.status).toBe('active');
    const view = await users.view(alice.id);
    expect(view.roles).toEqual(['member']);
    expect(view.walletAddress).toBe('0xabc');
    expect(view.permissions.models).toEqual(['claude-*']);
    expect((await users.resolve('alice.crypto')).id).toBe(alice.id);
    expect((await users.resolve(alice.id)).subject).toBe('alice.crypto');
  });

  it('refuses a duplicate (issuer, subject) with a conflict, but allows the subject from another issuer', async () => {
    await users.create({ issuer: ISS, subject: 'dup.crypto' });
    const err = await failure(users.create({ issuer: ISS, subject: 'dup.crypto' }));
    expect(err.status).toBe(409);
    expect(err.reason).toBe('user_exists');
    await users.create({ issuer: 'https://other.test', subject: 'dup.crypto' });
    expect((await failure(users.resolve('dup.crypto'))).reason).toBe('ambiguous_subject');
    expect((await users.resolve('dup.crypto', 'https://other.test')).issuer).toBe('https://other.test');
  });

  it('refuses an unknown role, capability or malformed model pattern with a 400', async () => {
    expect((await failure(users.create({ issuer: ISS, subject: 'x.crypto', roles: ['root'] }))).reason).toBe('unknown_role');
    const bob = await users.create({ issuer: ISS, subject: 'bob.crypto' });
    expect((await failure(users.grantRole(bob.id, 'superuser'))).reason).toBe('unknown_role');
    expect((await failure(users.grant(bob.id, 'capability', 'fly'))).reason).toBe('unknown_capability');
    expect((await failure(users.grant(bob.id, 'model', 'claude sonnet'))).reason).toBe('invalid_model_pattern');
    expect((await failure(users.resolve('nobody.crypto'))).status).toBe(404);
  });

  it('grants and revokes roles, models, capabilities and limits', async () => {
    const carol = await users.create({ issuer: ISS, subject: 'carol.crypto' });
    await users.grantRole(carol.id, 'admin');
    await users.grantRole(carol.id, 'admin'); // idempotent
    await users.grant(carol.id, 'model', 'gpt-*');
    await users.grant(carol.id, 'capability', 'read_usage');
    await users.setLimits(carol.id, { maxOutputTokens: 2048, rateTier: 'pro' });
    let view = await users.view(carol.id);
    expect(view.roles).toEqual(['admin', 'member']);
    expect(view.grants).toEqual({ models: ['gpt-*'], capabilities: ['read_usage'], maxOutputTokens: 2048, rateTier: 'pro', rateLimits: null });
    expect(view.permissions.capabilities).toEqual(['manage_users', 'manage_keys', 'read_usage', 'broadcast']);
    expect(view.permissions.maxOutputTokens).toBe(2048);
    expect(view.permissions.rateTier).toBe('pro');

    await users.revokeRole(carol.id, 'admin');
    await users.revoke(carol.id, 'capability', 'read_usage');
    await users.setLimits(carol.id, { maxOutputTokens: null });
    view = await users.view(carol.id);
    expect(view.roles).toEqual(['member']);
    expect(view.permissions.capabilities).toEqual([]);
    expect(view.permissions.models).toEqual(['claude-*', 'gpt-*']);
    expect(view.permissions.maxOutputTokens).toBeNull();
    expect(view.permissions.rateTier).toBe('pro');
    expect((await failure(users.setLimits(carol.id, { maxOutputTokens: 0 }))).reason).toBe('invalid_limit');
  });

  it('disables and enables, and lists by status and role', async () => {
    const dave = await users.create({ issuer: ISS, subject: 'dave.crypto', roles: ['admin'] });
    await users.setStatus(dave.id, 'disabled');
    expect((await users.get(dave.id)).status).toBe('disabled');
    expect((await users.list({ status: 'disabled' })).map((u) => u.subject)).toContain('dave.crypto');
    expect((await users.list({ role: 'admin' })).map((u) => u.subject)).toContain('dave.crypto');
    expect((await users.list({ status: 'active' })).map((u) => u.subject)).not.toContain('dave.crypto');
    await users.setStatus(dave.id, 'active');
    expect((await users.get(dave.id)).status).toBe('active');
  });

  it('records a login: creates on first sign-in, refreshes claims later, keeps a disabled user disabled', async () => {
    const first = await users.recordLogin({ issuer: ISS, subject: 'erin.crypto', walletAddress: '0x1', displayName: null });
    expect(first.lastLoginAt).not.toBeNull();
    expect((await users.view(first.id)).roles).toEqual(['member']);
    await users.setStatus(first.id, 'disabled');
    const again = await users.recordLogin({ issuer: ISS, subject: 'erin.crypto', walletAddress: '0x2', email: 'e@example.test' });
    expect(again.id).toBe(first.id);
    expect(again.walletAddress).toBe('0x2');
    expect(again.email).toBe('e@example.test');
    expect(again.status).toBe('disabled');
  });

  it('survives concurrent first logins of one user', async () => {
    const results = await Promise.all(Array.from({ length: 5 }, () => users.recordLogin({ issuer: ISS, subject: 'race.crypto' })));
    expect(new Set(results.map((u) => u.id)).size).toBe(1);
  });
});

describe('migrations', () => {
  it('are listed in name order', async () => {
    const { migrations } = await import('../../src/db/migrations/index.js');
    const names = Object.keys(migrations);
    expect(names).toEqual([...names].sort());
  });
});
